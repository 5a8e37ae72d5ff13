//! MobileSAM (TinyViT image encoder) parity with MobileSAM's reference code
//! (`mobilesam-mirror`'s `mobile_sam.SamPredictor`) on random weights in the `mobile_sam.pt`
//! key layout (fixtures from `tools/fixtures/mobilesam_fixtures.py`).
//!
//! - `reduced_tiny_vit_matches_mobile_sam`: the committed reduced TinyViT (widths
//!   [32, 64, 96, 320], depths [1, 2, 1, 1], real window sizes, f16-stored weights), loaded
//!   from a bare safetensors file so the TinyViT configuration is inferred from the keys.
//! - `full_size_tiny_vit_5m` (#[ignore]d, needs `python tools/fixtures/mobilesam_fixtures.py
//!   --full`): the real `sam_model_registry["vit_t"]` with random f32 weights, 40 MB, in
//!   `$MOBILESAM_FULL_DIR` (default `/tmp/mobilesam_full`).
//!
//! Tolerances (as for SAM): embedding and low-res logits within 1e-4 relative (max-abs / std
//! of the reference), per-channel embedding means within 1e-4 of the embedding's std, IoU
//! predictions within 1e-4 absolute, full-resolution masks agreeing on ≥ 99.9% of pixels.

mod common;

use candle_core::{DType, Device, IndexOp, Tensor};
use common::{
    check_mobilesam_cases, expected, fixture, max_abs, rel_err, stored_embedding_channels,
};
use segany::core::image::load_rgb;
use segany::core::TensorStore;
use segany::sam::EncoderKind;
use segany::{Sam, SamConfig, SamPredictor};
use std::path::Path;

const REL_TOL: f64 = 1e-4;
const IOU_TOL: f64 = 1e-4;

/// Embedding checks: the stored channels (all, or every 8th) and every channel's mean.
fn check_embedding(emb: &Tensor, exp: &TensorStore) {
    let (ours, channels, stride) = stored_embedding_channels(emb, exp);
    let emb = emb.to_device(&Device::Cpu).unwrap().i(0).unwrap();
    let e = rel_err(&ours, &channels);
    println!("embedding (every {stride}th channel) rel err {e:.2e}");
    assert!(e < REL_TOL, "embedding rel err {e}");

    let ours = emb.to_dtype(DType::F64).unwrap();
    let mean = ours.mean((1, 2)).unwrap();
    let ref_mean = exp.get("chelsea.embedding_mean").unwrap();
    let ref_std = exp.get("chelsea.embedding_std").unwrap();
    let scale = ref_std.mean_all().unwrap().to_scalar::<f64>().unwrap();
    let dm = max_abs(&mean, ref_mean) / scale;
    println!("per-channel means: max diff / std {dm:.2e}");
    assert!(dm < REL_TOL, "per-channel mean diff {dm}");
}

fn check(model: &Path, exp: &TensorStore) {
    let sam =
        Sam::load(model.to_str().unwrap(), &common::test_device(), DType::F32).expect("load model");
    assert_eq!(sam.encoder_kind(), EncoderKind::TinyViT);
    let mut predictor = SamPredictor::new(sam);
    let img = load_rgb(fixture("sam/images/chelsea.png")).unwrap();
    predictor.set_image(&img).unwrap();
    check_embedding(&predictor.embedding().unwrap().features, exp);

    let tols = (REL_TOL, IOU_TOL, 0.999);
    check_mobilesam_cases(&predictor, exp, "mobilesam", tols);
}

#[test]
fn reduced_tiny_vit_matches_mobile_sam() {
    check(
        &fixture("mobilesam/mobile_sam_reduced.safetensors"),
        &expected("mobilesam/expected.safetensors"),
    );
}

#[test]
fn reduced_checkpoint_infers_tiny_vit_config() {
    let store = TensorStore::load(fixture("mobilesam/mobile_sam_reduced.safetensors")).unwrap();
    let cfg = SamConfig::infer_from_tensors(&store).unwrap();
    let t = cfg.tiny_vit_config.as_ref().expect("TinyViT detected");
    assert_eq!(t.embed_dims, vec![32, 64, 96, 320]);
    assert_eq!(t.depths, vec![1, 2, 1, 1]);
    assert_eq!(&t.num_heads[1..], &[2, 3, 10]);
    assert_eq!(&t.window_sizes[1..], &[7, 14, 7]);
    assert_eq!((t.mlp_ratio, t.mbconv_expand_ratio), (1.0, 4.0));
    assert_eq!(cfg.vision_config.grid_size(), 64);
    assert_eq!(cfg.mask_decoder_config.num_hidden_layers, 1);
    assert_eq!(cfg.preset_name(), None);
}

#[test]
fn vit_t_preset_is_tiny_vit_5m() {
    let cfg = SamConfig::preset("mobile_sam").unwrap();
    assert_eq!(cfg, SamConfig::preset("vit_t").unwrap());
    assert_eq!(cfg.encoder_kind(), EncoderKind::TinyViT);
    assert_eq!(cfg.preset_name(), Some("vit_t"));
    let t = cfg.tiny_vit_config.as_ref().unwrap();
    assert_eq!(t.embed_dims, vec![64, 128, 160, 320]);
    assert_eq!(t.grid_size(), 64);
    assert!(cfg.validate().is_ok());
    // A TinyViT whose grid differs from the prompt encoder's is rejected by name.
    let mut bad = cfg.clone();
    let t = bad.tiny_vit_config.as_mut().unwrap();
    (t.embed_dims[3], t.num_heads[3]) = (256, 8); // stride-2 merge: a 32² grid
    let err = bad.validate().unwrap_err();
    assert!(err.contains("grid"), "{err}");
}

#[test]
fn wrong_attention_bias_idxs_is_rejected() {
    let mut store = TensorStore::load(fixture("mobilesam/mobile_sam_reduced.safetensors")).unwrap();
    let key = "image_encoder.layers.1.blocks.0.attn.attention_bias_idxs";
    let idx = store.get(key).expect("fixture stores the buffer").clone();
    let swapped = idx.to_dtype(DType::F32).unwrap().affine(1.0, 1.0).unwrap();
    store.insert(key, swapped.to_dtype(idx.dtype()).unwrap());
    let err = Sam::from_store(store, None, &Device::Cpu, DType::F32).unwrap_err();
    assert!(err.to_string().contains("attention_bias_idxs"), "{err}");
}

#[test]
#[ignore = "needs `python tools/fixtures/mobilesam_fixtures.py --full` (40 MB in /tmp)"]
fn full_size_tiny_vit_5m() {
    let dir = std::env::var("MOBILESAM_FULL_DIR").unwrap_or_else(|_| "/tmp/mobilesam_full".into());
    let dir = Path::new(&dir);
    let exp = TensorStore::load(dir.join("expected.safetensors")).unwrap();
    let store = TensorStore::load(dir.join("mobile_sam_random.safetensors")).unwrap();
    let cfg = SamConfig::infer_from_tensors(&store).unwrap();
    assert_eq!(cfg.preset_name(), Some("vit_t"), "{cfg:?}");
    check(&dir.join("mobile_sam_random.safetensors"), &exp);
}
