//! The SSP-SAM checkpoint path: `tools/convert_ssp_sam.py` output loads through
//! `segany::referring::load_ssp`, with the variant inferred or read from `config.json`, and bad
//! checkpoints are refused with the offending key named.
//!
//! `tests/fixtures/ssp/official_keys_{224,336}.json` (from `tools/fixtures/ssp_random_checkpoint.py`)
//! list the official state-dict names and shapes. The end-to-end converter test needs a Python
//! with torch and safetensors (`SEGANY_PYTHON`, default `python3`); without one it prints a
//! notice and returns.

use candle_core::{DType, Device, Tensor};
use segany::core::Error;
use segany::referring::load_ssp;
use segany_ssp::ClipFeatures;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("segany-ssp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn manifest(variant: &str) -> Vec<(String, Vec<usize>)> {
    let p = root().join(format!("tests/fixtures/ssp/official_keys_{variant}.json"));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v["tensors"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, s)| {
            let shape = s
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize);
            (k.clone(), shape.collect())
        })
        .collect()
}

/// What the converter keeps: everything but `encoder.*` and `sam.image_encoder.*`.
fn converted_keys(variant: &str) -> HashMap<String, Tensor> {
    manifest(variant)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("encoder.") && !k.starts_with("sam.image_encoder."))
        .map(|(k, s)| {
            let t = Tensor::full(0.01f32, s, &Device::Cpu).unwrap();
            (k, t)
        })
        .collect()
}

fn random_forward(model: &segany_ssp::SspSam) {
    let cfg = model.config().clone();
    let dev = Device::Cpu;
    let n = 1 + cfg.grid() * cfg.grid();
    let img = Tensor::randn(0f32, 1., (1, n, cfg.clip_dim), &dev).unwrap();
    let txt = Tensor::randn(0f32, 1., (1, cfg.clip_dim), &dev).unwrap();
    let words = Tensor::randn(0f32, 1., (1, 77, cfg.clip_dim), &dev).unwrap();
    let mut ids = vec![0i64; 77];
    ids[..4].copy_from_slice(&[49406, 1929, 269, 49407]);
    let ids = Tensor::from_vec(ids, (1, 77), &dev).unwrap();
    let clip = ClipFeatures {
        image_tokens: &img,
        text_embedding: &txt,
        word_features: &words,
        token_ids: &ids,
    };
    let emb = Tensor::randn(0f32, 1., (1, 256, 64, 64), &dev).unwrap();
    let out = model.forward(&clip, &emb).unwrap();
    assert_eq!(out.prompts.dims(), &[1, 128, 256]);
    assert_eq!(out.logits_512.dims(), &[1, 1, 512, 512]);
    let s = out
        .logits_512
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(s.is_finite(), "non-finite logits");
}

#[test]
fn converted_layout_loads_and_infers_variant() {
    for (variant, size) in [("224", 224), ("336", 336)] {
        let dir = scratch(&format!("layout-{variant}"));
        let tensors = converted_keys(variant);
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
        let model = load_ssp(&dir, &Device::Cpu).expect("converted layout loads");
        assert_eq!(model.config().image_size, size);
        if variant == "224" {
            random_forward(&model);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn missing_and_unexpected_tensors_are_named() {
    let dir = scratch("bad");
    let file = dir.join("head.safetensors");
    let mut tensors = converted_keys("224");
    tensors.remove("text_proj.weight_hh_l0_reverse");
    candle_core::safetensors::save(&tensors, &file).unwrap();
    match load_ssp(&file, &Device::Cpu) {
        Err(Error::MissingTensors(names)) => {
            assert_eq!(names, vec!["text_proj.weight_hh_l0_reverse".to_string()])
        }
        other => panic!("expected MissingTensors, got {other:?}"),
    }
    let mut tensors = converted_keys("224");
    tensors.insert(
        "stray.weight".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &file).unwrap();
    match load_ssp(&file, &Device::Cpu) {
        Err(Error::UnexpectedTensors(names)) => assert_eq!(names, vec!["stray.weight".to_string()]),
        other => panic!("expected UnexpectedTensors, got {other:?}"),
    }
    match load_ssp(&dir.join("absent.safetensors"), &Device::Cpu) {
        Err(Error::Io { path, .. }) => assert!(path.ends_with("absent.safetensors")),
        other => panic!("expected Io, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn python() -> Option<String> {
    let py = std::env::var("SEGANY_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import torch, safetensors"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then_some(py)
}

fn run(py: &str, script: &Path, args: &[&str]) {
    let out = Command::new(py).arg(script).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn converter_output_of_a_random_checkpoint_loads() {
    let Some(py) = python() else {
        eprintln!(
            "NOTICE: no Python with torch + safetensors (set SEGANY_PYTHON); skipping the \
             tools/convert_ssp_sam.py round trip"
        );
        return;
    };
    let dir = scratch("convert");
    let pth = dir.join("checkpoint_best_miou.pth");
    let out = dir.join("converted");
    let manifest = root().join("tests/fixtures/ssp/official_keys_224.json");
    run(
        &py,
        &root().join("tools/fixtures/ssp_random_checkpoint.py"),
        &[
            "--manifest",
            manifest.to_str().unwrap(),
            "--out",
            pth.to_str().unwrap(),
        ],
    );
    run(
        &py,
        &root().join("tools/convert_ssp_sam.py"),
        &[pth.to_str().unwrap(), "--out", out.to_str().unwrap()],
    );
    assert!(out.join("config.json").is_file());
    let model = load_ssp(&out, &Device::Cpu).expect("converted checkpoint loads");
    assert_eq!(model.config().image_size, 224);
    assert_eq!(model.config().clip_dim, 512);
    random_forward(&model);
    let _ = std::fs::remove_dir_all(dir);
}
