//! SAM on a GPU: ViT-B and ViT-H image encoders at 1024² and one prompt (prompt encoder, mask
//! decoder, upscaling, thresholding, masks on the host) in f32, f16 and bf16, each result
//! checked against the CPU in f32 and, where `benches/compare/gpu_refs.py` wrote them, against
//! official segment-anything's f32 outputs on the same weights.
//!
//! ```text
//! cargo bench --features cuda --bench gpu            # random weights, CPU check only
//! python benches/compare/gpu_refs.py --out /tmp/segany_gpu
//! SEGANY_GPU_DIR=/tmp/segany_gpu cargo bench --features cuda --bench gpu
//! ```
//!
//! Environment: `SEGANY_BENCH_DEVICE` (default: the best device compiled in; on the CPU the
//! bench says so and stops), `SEGANY_GPU_DIR` (`sam_<model>.safetensors` weights and
//! `ref_<model>.safetensors` outputs; the table goes to `gpu_segany.json` there),
//! `SEGANY_GPU_MODELS` (default `vit_b,vit_h`), `SEGANY_GPU_REPS` (default 20).
//!
//! Times are medians over the repetitions after warm-up, with the device synchronised around
//! each call. The run fails when a result leaves its tolerance (see `Tolerance`).

use candle_core::{DType, Device, Tensor};
use segany::core::image::ResizeLongestSide;
use segany::core::TensorStore;
use segany::{BinaryMask, Prompt, Sam, SamConfig, SamPredictor};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

const POINT: (f32, f32) = (500.0, 375.0);

/// Limits against the CPU's f32 results: embedding and low-res logits as max|a−b| / std of
/// the reference, and the least fraction of pixels on which each mask agrees.
struct Tolerance {
    embedding: f64,
    logits: f64,
    agreement: f64,
}

fn tolerance(dtype: DType) -> Tolerance {
    match dtype {
        DType::F32 => Tolerance {
            embedding: 1e-3,
            logits: 1e-3,
            agreement: 0.999,
        },
        DType::F16 => Tolerance {
            embedding: 5e-2,
            logits: 5e-2,
            agreement: 0.99,
        },
        _ => Tolerance {
            embedding: 0.3,
            logits: 0.3,
            agreement: 0.97,
        },
    }
}

fn image() -> image::RgbImage {
    image::RgbImage::from_fn(1024, 768, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    })
}

fn rel_err(a: &Tensor, b: &Tensor) -> anyhow::Result<f64> {
    let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let b = b.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let max = (&a - &b)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f64>()?;
    let b = b.flatten_all()?;
    let std = b.broadcast_sub(&b.mean_all()?)?.sqr()?.mean_all()?.sqrt()?;
    Ok(max / std.to_scalar::<f64>()?.max(1e-12))
}

fn agreement(a: &[BinaryMask], b: &[BinaryMask]) -> anyhow::Result<f64> {
    let mut worst = 1.0f64;
    for (x, y) in a.iter().zip(b) {
        worst = worst.min(x.agreement(y)?);
    }
    Ok(worst)
}

/// Median and best of `reps` timed calls (ms) after `warm` untimed ones.
fn time(dev: &Device, warm: usize, reps: usize, mut f: impl FnMut()) -> anyhow::Result<(f64, f64)> {
    for _ in 0..warm {
        f();
    }
    dev.synchronize()?;
    let mut ms = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f();
        dev.synchronize()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok((ms[ms.len() / 2], ms[0]))
}

/// Random weights under Meta names, `randn · 0.02` everywhere (as `benches/sam.rs`).
fn random_weights(cfg: &SamConfig) -> anyhow::Result<TensorStore> {
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    Sam::new(cfg, vb)?;
    let mut out = std::collections::HashMap::new();
    for (name, var) in varmap.data().lock().expect("varmap").iter() {
        let t = var.as_tensor();
        out.insert(
            name.clone(),
            Tensor::randn(0f32, 0.02, t.shape(), &Device::Cpu)?,
        );
    }
    Ok(TensorStore::from_tensors(out))
}

type Row = BTreeMap<String, f64>;

/// The embedding's and the point prompt's low-res logits' distances to segment-anything's
/// (`ref_<model>.safetensors`), into `row`, when that file is there.
fn vs_torch(
    row: &mut Row,
    reference: Option<&TensorStore>,
    embedding: &Tensor,
    low_res: &Tensor,
) -> anyhow::Result<()> {
    if let Some(r) = reference {
        let emb = r.get("embedding").expect("ref embedding");
        let low = r.get("point.low_res").expect("ref low_res");
        row.insert("embedding_vs_torch".into(), rel_err(embedding, emb)?);
        row.insert("logits_vs_torch".into(), rel_err(low_res, low)?);
    }
    Ok(())
}

/// `SEGANY_GPU_DTYPES` (default `f32,f16,bf16`).
fn dtypes() -> anyhow::Result<Vec<DType>> {
    let names = std::env::var("SEGANY_GPU_DTYPES").unwrap_or_else(|_| "f32,f16,bf16".into());
    Ok(names
        .split(',')
        .map(segany::core::parse_dtype)
        .collect::<Result<_, _>>()?)
}

fn run_model(
    dev: &Device,
    dir: Option<&PathBuf>,
    name: &str,
    reps: usize,
) -> anyhow::Result<BTreeMap<String, Row>> {
    let weights_file = dir.map(|d| d.join(format!("sam_{name}.safetensors")));
    let store = match &weights_file {
        Some(f) if f.exists() => TensorStore::load(f)?,
        _ => random_weights(&SamConfig::preset(name)?)?,
    };
    let reference = match dir.map(|d| d.join(format!("ref_{name}.safetensors"))) {
        Some(f) if f.exists() => Some(TensorStore::load(f)?),
        _ => None,
    };
    let img = image();
    let prompt = Prompt::new().foreground(POINT.0, POINT.1);
    let mut table = BTreeMap::new();

    // The CPU in f32: the results every device run is checked against.
    let mut cpu = SamPredictor::new(Sam::from_store(
        store.clone(),
        None,
        &Device::Cpu,
        DType::F32,
    )?);
    let t = Instant::now();
    cpu.set_image(&img)?;
    let cpu_encoder_ms = t.elapsed().as_secs_f64() * 1e3;
    let cpu_emb = cpu.embedding().expect("set").features.clone();
    let cpu_pred = cpu.predict(&prompt, true)?;
    let mut row = Row::new();
    row.insert("encoder_ms".into(), cpu_encoder_ms);
    vs_torch(
        &mut row,
        reference.as_ref(),
        &cpu_emb,
        &cpu_pred.low_res_logits,
    )?;
    println!("{name} cpu f32: {row:?}");
    table.insert("cpu_f32".to_string(), row);
    drop(cpu);

    let mut failures = Vec::new();
    for dtype in dtypes()? {
        let label = format!("{dtype:?}").to_lowercase();
        let sam = Sam::from_store(store.clone(), None, dev, dtype)?;
        let (pixels, _) = ResizeLongestSide::new(sam.image_size()).preprocess(&img, dev)?;
        let (enc_ms, enc_best) = time(dev, 3, reps, || {
            sam.encode(&pixels).expect("encode");
        })?;
        let mut predictor = SamPredictor::new(sam);
        predictor.set_image(&img)?;
        let (prompt_ms, prompt_best) = time(dev, 5, reps.max(50), || {
            predictor.predict(&prompt, true).expect("predict");
        })?;
        let emb = predictor.embedding().expect("set").features.clone();
        let pred = predictor.predict(&prompt, true)?;
        let tol = tolerance(dtype);
        let mut row = Row::new();
        row.insert("encoder_ms".into(), enc_ms);
        row.insert("encoder_best_ms".into(), enc_best);
        row.insert("prompt_ms".into(), prompt_ms);
        row.insert("prompt_best_ms".into(), prompt_best);
        let e = rel_err(&emb, &cpu_emb)?;
        let l = rel_err(&pred.low_res_logits, &cpu_pred.low_res_logits)?;
        let a = agreement(&pred.masks, &cpu_pred.masks)?;
        row.insert("embedding_vs_cpu".into(), e);
        row.insert("logits_vs_cpu".into(), l);
        row.insert("mask_agreement_vs_cpu".into(), a);
        vs_torch(&mut row, reference.as_ref(), &emb, &pred.low_res_logits)?;
        println!("{name} {label}: {row:?}");
        if e > tol.embedding || l > tol.logits || a < tol.agreement {
            failures.push(format!(
                "{name} {label}: embedding {e:.2e} (tol {:.0e}), logits {l:.2e} (tol {:.0e}), \
                 agreement {a:.5} (min {})",
                tol.embedding, tol.logits, tol.agreement
            ));
        }
        table.insert(label, row);
    }
    if !failures.is_empty() {
        anyhow::bail!("results out of tolerance:\n{}", failures.join("\n"));
    }
    Ok(table)
}

fn main() -> anyhow::Result<()> {
    let dev = segany::core::device_from_env("SEGANY_BENCH_DEVICE")?;
    if dev.is_cpu() {
        println!("gpu bench: no GPU (build with --features cuda or metal, or set SEGANY_BENCH_DEVICE); nothing to time");
        return Ok(());
    }
    let dir = std::env::var("SEGANY_GPU_DIR").ok().map(PathBuf::from);
    let models = std::env::var("SEGANY_GPU_MODELS").unwrap_or_else(|_| "vit_b,vit_h".into());
    let reps: usize = std::env::var("SEGANY_GPU_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut all = BTreeMap::new();
    for name in models.split(',') {
        all.insert(name.to_string(), run_model(&dev, dir.as_ref(), name, reps)?);
    }
    println!("\n| model | run | encoder ms (best) | prompt ms (best) | emb vs CPU f32 | logits vs CPU f32 | masks agree | emb vs torch f32 |");
    println!("|---|---|---|---|---|---|---|---|");
    for (model, rows) in &all {
        for (run, r) in rows {
            let g = |k: &str| r.get(k).copied();
            let f = |k: &str, p: usize| g(k).map_or("–".to_string(), |v| format!("{v:.p$}"));
            let e = |k: &str| g(k).map_or("–".to_string(), |v| format!("{v:.1e}"));
            println!(
                "| {model} | {run} | {} ({}) | {} ({}) | {} | {} | {} | {} |",
                f("encoder_ms", 1),
                f("encoder_best_ms", 1),
                f("prompt_ms", 2),
                f("prompt_best_ms", 2),
                e("embedding_vs_cpu"),
                e("logits_vs_cpu"),
                f("mask_agreement_vs_cpu", 5),
                e("embedding_vs_torch"),
            );
        }
    }
    if let Some(d) = dir {
        std::fs::write(
            d.join("gpu_segany.json"),
            serde_json::to_string_pretty(&all)?,
        )?;
    }
    Ok(())
}
