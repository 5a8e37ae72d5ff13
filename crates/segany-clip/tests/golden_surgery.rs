//! Parity with the official CLIP Surgery code (`clip_surgery_seed3.safetensors`, see the
//! golden README): surgery and plain image tokens, EOT embeddings and `ln_final` features.

mod common;

use candle_core::DType;
use candle_nn::VarBuilder;
use segany_clip::{ClipModel, Layout, LoadOptions, VisionMode};

const TOL: f32 = 1e-4;

#[test]
fn clip_surgery_golden() {
    let path = common::golden_dir().join("clip_surgery_seed3.safetensors");
    if !path.exists() {
        eprintln!(
            "NOTICE: golden file {} absent (set GOLDEN_DIR); skipping clip_surgery_golden",
            path.display()
        );
        return;
    }
    let ts = common::load(&path);
    let weights = common::group(&ts, "weights");
    let dev = common::test_device();
    let vb = VarBuilder::from_tensors(weights, DType::F32, &dev);
    assert_eq!(Layout::detect(&vb).unwrap(), Layout::OpenAi);
    let model = ClipModel::load(vb, &LoadOptions::default()).unwrap();
    let px = &ts["inputs.pixel_values"].to_device(&dev).unwrap();
    let ids = &ts["inputs.token_ids"].to_device(&dev).unwrap();

    let plain = model.encode_image_tokens(px, VisionMode::Plain).unwrap();
    common::assert_close("plain.image", &plain, &ts["outputs.plain.image"], TOL);
    let surgery = model.encode_image_tokens(px, VisionMode::CS_VIT).unwrap();
    common::assert_close("surgery.image", &surgery, &ts["outputs.surgery.image"], TOL);

    // The pooled embedding is token 0 of the plain path.
    let pooled = model.encode_image(px).unwrap();
    let tok0 = plain.narrow(1, 0, 1).unwrap().squeeze(1).unwrap();
    common::assert_close("pooled == token 0", &pooled, &tok0, 1e-6);

    let text = model.encode_text(ids).unwrap();
    for mode in ["plain", "surgery"] {
        common::assert_close(
            &format!("{mode}.text.0"),
            &text.embeds,
            &ts[&format!("outputs.{mode}.text.0")],
            TOL,
        );
        common::assert_close(
            &format!("{mode}.text.1"),
            &text.tokens,
            &ts[&format!("outputs.{mode}.text.1")],
            TOL,
        );
    }
}
