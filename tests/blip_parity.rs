//! BLIP captioning vs transformers' `BlipForConditionalGeneration` (fixtures from
//! `tools/fixtures/blip_parity.py`: a tiny random model saved with `save_pretrained`, so the
//! LM head is tied and absent from the file, a tiny BERT WordPiece `tokenizer.json`, and three
//! real image crops).
//!
//! Checked per crop: BLIP pixels (Pillow-exact bicubic to 384², CLIP mean/std) within 1e-5,
//! image tokens and first-step logits within 1e-4 relative (max|Δ| / max|ref|), the greedy ids
//! of `generate()` (max_length 20, stop on [SEP]) and the decoded caption exactly equal.

mod common;

use candle_core::{DType, Device, IndexOp, Tensor};
use common::{expected, fixture, get, max_abs, rel_err};
use segany::core::image::load_rgb;
use segany::semantic::engine::Captioner;
use serde_json::Value;

#[test]
fn blip_matches_transformers() {
    let dev = Device::Cpu;
    let mut cap = Captioner::load(fixture("blip/tiny").to_str().unwrap(), &dev, DType::F32)
        .expect("load tiny BLIP");
    let exp = expected("blip/expected.safetensors");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("blip/expected.json")).unwrap())
            .unwrap();
    let bos = cap.model().config().text_config.bos_token_id;
    for name in ["chelsea", "astronaut", "coffee"] {
        let img = load_rgb(fixture(&format!("blip/{name}.png"))).unwrap();
        let px = cap.pixels(&img).unwrap();
        if let Some(reference) = exp.get(&format!("pixel_values.{name}")) {
            let d = max_abs(&px, reference);
            println!("{name}: pixels max|Δ| = {d:.2e} (tolerance 1e-5)");
            assert!(d <= 1e-5, "{name}: pixels differ by {d}");
        }
        let model = cap.model();
        let embeds = model.image_embeds(&px).unwrap();
        let e = rel_err(&embeds, &get(&exp, &format!("image_embeds.{name}")));
        println!("{name}: image_embeds rel err {e:.2e} (tolerance 1e-4)");
        assert!(e <= 1e-4, "{name}: image embeds rel err {e}");
        model.reset();
        let ids = Tensor::new(&[[bos]], &dev).unwrap();
        let logits = model
            .decoder_logits(&ids, &embeds)
            .unwrap()
            .i((0, 0))
            .unwrap();
        model.reset();
        let e = rel_err(&logits, &get(&exp, &format!("first_logits.{name}")));
        println!("{name}: first-step logits rel err {e:.2e} (tolerance 1e-4)");
        assert!(e <= 1e-4, "{name}: first logits rel err {e}");

        let case = &meta["cases"][name];
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = cap.caption_ids(&img).unwrap();
        assert_eq!(got, want, "{name}: generated ids");
        let text = cap.caption(&img).unwrap();
        assert_eq!(text, case["caption"].as_str().unwrap(), "{name}: caption");
        println!("{name}: {} ids, caption {text:?}", got.len());
    }
}

#[test]
fn missing_tokenizer_is_reported() {
    let dir = std::env::temp_dir().join(format!("segany_blip_notok_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.safetensors", "config.json"] {
        std::fs::copy(fixture(&format!("blip/tiny/{f}")), dir.join(f)).unwrap();
    }
    let err = Captioner::load(dir.to_str().unwrap(), &Device::Cpu, DType::F32).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
