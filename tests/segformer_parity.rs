//! SegFormer parity with transformers' `SegformerForSemanticSegmentation` on a tiny random
//! checkpoint (tools/fixtures/segformer_fixtures.py: 150 ADE20K classes, 128×160 input,
//! every weight and norm statistic random) run on chelsea.png, plus SSA's post-processing
//! (bilinear `align_corners=True` upsampling to the image size, argmax).

mod common;

use candle_core::{DType, Device, Module};
use common::{expected, fixture, get, max_abs, rel_err};
use segany::core::image::load_rgb;
use segany::semantic::SemanticSegmenter;

fn load() -> SemanticSegmenter {
    let dir = fixture("segformer/tiny");
    SemanticSegmenter::load(dir.to_str().unwrap(), &Device::Cpu, DType::F32).unwrap()
}

fn image() -> image::RgbImage {
    load_rgb(fixture("sam/images/chelsea.png")).unwrap()
}

fn class_map_of(store: &segany::core::TensorStore) -> Vec<u32> {
    store
        .get("class_map")
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<i32>()
        .unwrap()
        .into_iter()
        .map(|v| v as u32)
        .collect()
}

#[test]
fn config_and_processor_from_files() {
    let seg = load();
    assert_eq!(seg.num_labels(), 150);
    assert_eq!(seg.config().id2label["7"], "bed ");
    assert_eq!(seg.processor().size, (128, 160));
    // The weights file alone finds its config.json and preprocessor_config.json siblings.
    let file = fixture("segformer/tiny/model.safetensors");
    let seg = SemanticSegmenter::load(file.to_str().unwrap(), &Device::Cpu, DType::F32).unwrap();
    assert_eq!(seg.processor().size, (128, 160));
}

#[test]
fn pixel_values_match_the_pil_processor() {
    let seg = load();
    let exp = expected("segformer/expected.safetensors");
    let pixels = seg.processor().preprocess(&image(), &Device::Cpu).unwrap();
    let err = max_abs(&pixels, &get(&exp, "pixel_values"));
    eprintln!("pixel_values: max abs err {err:.3e}");
    // Pillow's resize and transformers' f32 arithmetic are reproduced bit for bit.
    assert_eq!(err, 0.0, "pixel_values max abs err {err}");
}

#[test]
fn stages_and_logits_match_transformers() {
    let seg = load();
    let exp = expected("segformer/expected.safetensors");
    // Feed transformers' own pixel values so that only the network is compared.
    let pixels = get(&exp, "pixel_values");
    let model = seg.model();
    let stages = model.encoder_hidden_states(&pixels).unwrap();
    for (i, s) in stages.iter().enumerate() {
        let e = rel_err(s, &get(&exp, &format!("stage_{i}")));
        eprintln!("stage {i}: rel err {e:.3e}");
        assert!(e < 2e-5, "stage {i}: rel err {e}");
    }
    let logits = model.forward(&pixels).unwrap();
    let reference = get(&exp, "logits");
    let (abs, rel) = (max_abs(&logits, &reference), rel_err(&logits, &reference));
    eprintln!("logits: max abs err {abs:.3e}, rel err {rel:.3e}");
    assert!(abs < 1e-5 && rel < 5e-5, "logits max abs {abs}, rel {rel}");
}

#[test]
fn ssa_class_map_from_reference_logits_is_exact() {
    let exp = expected("segformer/expected.safetensors");
    let logits = get(&exp, "logits");
    let map = segany_segformer::class_map(&logits, 300, 451).unwrap();
    let reference = class_map_of(&exp);
    let diff = map.iter().zip(&reference).filter(|(a, b)| a != b).count();
    assert_eq!(diff, 0, "{diff} of {} pixels differ", map.len());
}

#[test]
fn end_to_end_class_map_agrees() {
    let seg = load();
    let exp = expected("segformer/expected.safetensors");
    let map = seg.segment(&image()).unwrap();
    let reference = class_map_of(&exp);
    assert_eq!(map.len(), reference.len());
    let diff = map.iter().zip(&reference).filter(|(a, b)| a != b).count();
    let frac = diff as f64 / map.len() as f64;
    eprintln!(
        "class map: {diff} of {} pixels differ ({frac:.2e})",
        map.len()
    );
    // Only pixels where two classes' upsampled logits tie within float noise may flip.
    assert!(frac <= 1e-4, "{diff} pixels differ");
}

#[test]
fn missing_tensor_is_named() {
    let mut store =
        segany::core::TensorStore::load(fixture("segformer/tiny/model.safetensors")).unwrap();
    store.remove("decode_head.classifier.bias");
    let seg = load();
    let err = SemanticSegmenter::from_store(
        store,
        seg.config().clone(),
        seg.processor().clone(),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("decode_head.classifier.bias"),
        "{err}"
    );
}
