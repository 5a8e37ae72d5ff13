//! Why this crate re-implements SegFormer: on the parity fixture (tools/fixtures/
//! segformer_fixtures.py), candle-transformers 0.11.1's `SemanticSegmentationModel` is far from
//! transformers' logits (nearest-neighbour decode-head upsampling, classifier without bias,
//! `layer_norm_eps` in every norm), while this crate's model matches them to ~1e-6.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/segformer")
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn candle_transformers_deviates() {
    let dir = fixtures();
    let expected =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let (pixels, reference) = (&expected["pixel_values"], &expected["logits"]);
    let json = std::fs::read_to_string(dir.join("tiny/config.json")).unwrap();
    let weights =
        candle_core::safetensors::load(dir.join("tiny/model.safetensors"), &Device::Cpu).unwrap();
    let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);

    let ours_cfg: segany_segformer::Config = serde_json::from_str(&json).unwrap();
    let ours =
        segany_segformer::SegformerForSemanticSegmentation::new(&ours_cfg, vb.clone()).unwrap();
    let ours_err = max_abs(&ours.forward(pixels).unwrap(), reference);

    use candle_transformers::models::segformer as ct;
    let cfg: ct::Config = serde_json::from_str(&json).unwrap();
    let theirs = ct::SemanticSegmentationModel::new(&cfg, cfg.id2label.len(), vb).unwrap();
    let theirs_err = max_abs(&theirs.forward(pixels).unwrap(), reference);

    let scale = reference
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    eprintln!("max |logit| {scale:.3}: this crate max abs err {ours_err:.2e}, candle-transformers {theirs_err:.2e}");
    assert!(ours_err < 1e-5, "ours {ours_err}");
    assert!(
        theirs_err > 100.0 * ours_err && theirs_err > 1e-2,
        "candle-transformers {theirs_err}"
    );
}
