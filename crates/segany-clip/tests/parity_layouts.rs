//! Parity with transformers `CLIPModel` and open_clip `CLIP` on tiny random models in their
//! own checkpoint layouts (fixtures from `tools/fixtures/clip_parity.py`): image embeddings,
//! all image tokens after `ln_post`/projection, text embeddings, `ln_final` token features and
//! logits, QuickGELU and GELU.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use segany_clip::{Activation, ClipConfig, ClipModel, Layout, LoadOptions, VisionMode};

const TOL: f32 = 1e-4;

/// Fixture weights with the sparse token embedding expanded to its dense checkpoint key.
fn checkpoint(ts: &HashMap<String, Tensor>, key: &str, vocab: usize) -> HashMap<String, Tensor> {
    let mut w = common::group(ts, "weights");
    let ids = ts["sparse.token_embedding.ids"]
        .to_dtype(DType::U32)
        .unwrap();
    let rows = &ts["sparse.token_embedding.rows"];
    let width = rows.dim(1).unwrap();
    let dense = Tensor::zeros((vocab, width), DType::F32, &Device::Cpu)
        .unwrap()
        .index_add(&ids, rows, 0)
        .unwrap();
    w.insert(key.to_string(), dense);
    w
}

fn run(name: &str, layout: Layout, sparse_key: &str, cfg: ClipConfig, act: Activation) {
    let dir = common::fixtures_dir();
    let ts = common::load(&dir.join(format!("{name}.safetensors")));
    assert_eq!(cfg.vision.activation, act);
    let weights = checkpoint(&ts, sparse_key, cfg.text.vocab_size);
    let dev = common::test_device();
    let vb = VarBuilder::from_tensors(weights, DType::F32, &dev);
    assert_eq!(Layout::detect(&vb).unwrap(), layout, "{name}: layout");
    let model = ClipModel::load(
        vb,
        &LoadOptions {
            config: Some(cfg),
            ..Default::default()
        },
    )
    .unwrap();
    let px = &ts["inputs.pixel_values"].to_device(&dev).unwrap();
    let ids = &ts["inputs.token_ids"].to_device(&dev).unwrap();
    let out = |k: &str| &ts[&format!("outputs.{k}")];

    let img = model.encode_image(px).unwrap();
    common::assert_close(
        &format!("{name} image_embeds"),
        &img,
        out("image_embeds"),
        TOL,
    );
    let tokens = model.encode_image_tokens(px, VisionMode::Plain).unwrap();
    common::assert_close(
        &format!("{name} image_tokens"),
        &tokens,
        out("image_tokens"),
        TOL,
    );
    let text = model.encode_text(ids).unwrap();
    common::assert_close(
        &format!("{name} text_embeds"),
        &text.embeds,
        out("text_embeds"),
        TOL,
    );
    common::assert_close(
        &format!("{name} text_tokens"),
        &text.tokens,
        out("text_tokens"),
        TOL,
    );
    // The pooled embedding alone stops at the batch's last end-of-text token (the fixture's
    // prompts are padded to 77 ids and end at different positions).
    let ends: Vec<usize> = ids
        .to_dtype(DType::U32)
        .unwrap()
        .to_vec2::<u32>()
        .unwrap()
        .iter()
        .map(|r| r.iter().position(|&t| t == 49407).expect("end-of-text"))
        .collect();
    assert!(
        ends.iter().max().unwrap() + 1 < 77,
        "{name}: no padding to skip"
    );
    let embeds = model.encode_text_embeds(ids).unwrap();
    common::assert_close(
        &format!("{name} text_embeds (stopping at end-of-text)"),
        &embeds,
        out("text_embeds"),
        TOL,
    );
    let logits = model.forward(px, ids).unwrap().logits_per_image;
    common::assert_close(
        &format!("{name} logits"),
        &logits,
        out("logits_per_image"),
        TOL,
    );
}

fn config(name: &str, transformers: bool) -> ClipConfig {
    let path = common::fixtures_dir().join(format!("{name}.config.json"));
    let json = std::fs::read_to_string(&path).unwrap();
    if transformers {
        ClipConfig::from_transformers_json(&json).unwrap()
    } else {
        ClipConfig::from_open_clip_json(&json).unwrap()
    }
}

const HF_EMB: &str = "text_model.embeddings.token_embedding.weight";
const OC_EMB: &str = "token_embedding.weight";

#[test]
fn transformers_quickgelu() {
    let n = "transformers_quickgelu";
    run(
        n,
        Layout::Transformers,
        HF_EMB,
        config(n, true),
        Activation::QuickGelu,
    );
}

#[test]
fn transformers_gelu() {
    let n = "transformers_gelu";
    run(
        n,
        Layout::Transformers,
        HF_EMB,
        config(n, true),
        Activation::Gelu,
    );
}

#[test]
fn open_clip_quickgelu() {
    let n = "open_clip_quickgelu";
    run(
        n,
        Layout::OpenAi,
        OC_EMB,
        config(n, false),
        Activation::QuickGelu,
    );
}

#[test]
fn open_clip_gelu() {
    let n = "open_clip_gelu";
    run(
        n,
        Layout::OpenAi,
        OC_EMB,
        config(n, false),
        Activation::Gelu,
    );
}

/// The same open_clip checkpoint read through the open_clip rename map, and the geometry
/// inferred from shapes. Head counts cannot be read from shapes: OpenAI's rule (width / 64)
/// gives 1 for this tiny model with 32-wide heads, so they are taken from the config.
#[test]
fn open_clip_layout_and_inferred_geometry() {
    let n = "open_clip_quickgelu";
    let ts = common::load(&common::fixtures_dir().join(format!("{n}.safetensors")));
    let cfg = config(n, false);
    let vb = VarBuilder::from_tensors(checkpoint(&ts, OC_EMB, 49408), DType::F32, &Device::Cpu);
    let canonical = segany_clip::canonical_var_builder(vb.clone(), Layout::OpenClip);
    let mut inferred = ClipConfig::infer_from_weights(&canonical, Activation::QuickGelu).unwrap();
    assert_eq!((inferred.vision.heads, inferred.text.heads), (1, 1)); // width 64 / 64
    inferred.vision.heads = cfg.vision.heads;
    inferred.text.heads = cfg.text.heads;
    assert_eq!(inferred, cfg);
    let model = ClipModel::load(
        vb,
        &LoadOptions {
            layout: Some(Layout::OpenClip),
            config: Some(inferred),
            ..Default::default()
        },
    )
    .unwrap();
    let text = model.encode_text(&ts["inputs.token_ids"]).unwrap();
    common::assert_close(
        "open_clip map text_embeds",
        &text.embeds,
        &ts["outputs.text_embeds"],
        TOL,
    );
}

/// Smallest cosine similarity between matching rows of two `(N, D)` tensors.
fn min_row_cosine(a: &Tensor, b: &Tensor) -> f32 {
    let dot = (a * b).unwrap().sum(1).unwrap();
    let na = a.sqr().unwrap().sum(1).unwrap().sqrt().unwrap();
    let nb = b.sqr().unwrap().sum(1).unwrap().sqrt().unwrap();
    (dot / (na * nb).unwrap())
        .unwrap()
        .min(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// bf16 products (`CpuMatmul::Bf16`) on the transformers fixture: image and text embeddings
/// within bf16's rounding of the reference (cosine ≥ 0.999 per embedding, logits within 1% of
/// their range), and different from the f32 results (the bf16 kernel really ran). Back to f32,
/// the f32 results again. On a CPU without AVX-512 BF16 the switch reports `false` and
/// nothing changes.
#[test]
fn bf16_products_stay_close_to_the_reference() {
    let n = "transformers_quickgelu";
    let ts = common::load(&common::fixtures_dir().join(format!("{n}.safetensors")));
    let cfg = config(n, true);
    let weights = checkpoint(&ts, HF_EMB, cfg.text.vocab_size);
    let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    let mut model = ClipModel::load(
        vb,
        &LoadOptions {
            config: Some(cfg),
            ..Default::default()
        },
    )
    .unwrap();
    let (px, ids) = (&ts["inputs.pixel_values"], &ts["inputs.token_ids"]);
    let f32_img = model.encode_image(px).unwrap();
    let f32_txt = model.encode_text(ids).unwrap().embeds;
    let on = model
        .set_cpu_matmul(segany_core::nn::CpuMatmul::Bf16)
        .unwrap();
    let img = model.encode_image(px).unwrap();
    let txt = model.encode_text(ids).unwrap().embeds;
    let logits = model.forward(px, ids).unwrap().logits_per_image;
    let diff = |a: &Tensor, b: &Tensor| -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    if !on {
        eprintln!("NOTICE: no AVX-512 BF16 on this CPU; the bf16 switch is a no-op here");
        assert_eq!(diff(&img, &f32_img), 0.0);
        return;
    }
    let (ci, ct) = (
        min_row_cosine(&img, &ts["outputs.image_embeds"]),
        min_row_cosine(&txt, &ts["outputs.text_embeds"]),
    );
    let want = &ts["outputs.logits_per_image"];
    let range = (want.max_all().unwrap().to_scalar::<f32>().unwrap()
        - want.min_all().unwrap().to_scalar::<f32>().unwrap())
    .max(1e-3);
    let dl = diff(&logits, want);
    println!("bf16: image cosine {ci:.6}, text cosine {ct:.6}, logits max|Δ| {dl:.3e} (range {range:.3})");
    assert!(ci >= 0.999 && ct >= 0.999, "cosines {ci}, {ct}");
    assert!(
        dl <= 0.01 * range,
        "logits differ by {dl} of a {range} range"
    );
    assert!(
        diff(&img, &f32_img) > 0.0,
        "bf16 results equal f32: kernel not used"
    );
    assert!(!model
        .set_cpu_matmul(segany_core::nn::CpuMatmul::F32)
        .unwrap());
    assert_eq!(diff(&model.encode_image(px).unwrap(), &f32_img), 0.0);
    assert_eq!(diff(&model.encode_text(ids).unwrap().embeds, &f32_txt), 0.0);
}
