//! Zero-shot probabilities vs open_clip's `build_zero_shot_classifier` (labels × templates,
//! normalised mean of normalised prompt embeddings), on the open_clip parity fixtures.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use segany_clip::{
    ClipConfig, ClipError, ClipModel, ClipTokenizer, LoadOptions, ZeroShotClassifier,
};

// The same inputs as tools/fixtures/clip_parity.py (ZS_LABELS, ZS_TEMPLATES).
const LABELS: [&str; 4] = ["astronaut", "cup of coffee", "rocket", "dog"];
const TEMPLATES: [&str; 3] = ["a photo of a {}.", "a blurry picture of the {}", "{}"];

fn model(name: &str) -> (ClipModel, std::collections::HashMap<String, Tensor>) {
    let dir = common::fixtures_dir();
    let ts = common::load(&dir.join(format!("{name}.safetensors")));
    let mut w = common::group(&ts, "weights");
    let ids = ts["sparse.token_embedding.ids"]
        .to_dtype(DType::U32)
        .unwrap();
    let rows = &ts["sparse.token_embedding.rows"];
    let dense = Tensor::zeros((49408, rows.dim(1).unwrap()), DType::F32, &Device::Cpu)
        .unwrap()
        .index_add(&ids, rows, 0)
        .unwrap();
    w.insert("token_embedding.weight".into(), dense);
    let json = std::fs::read_to_string(dir.join(format!("{name}.config.json"))).unwrap();
    let cfg = ClipConfig::from_open_clip_json(&json).unwrap();
    let vb = VarBuilder::from_tensors(w, DType::F32, &Device::Cpu);
    let opts = LoadOptions {
        config: Some(cfg),
        ..Default::default()
    };
    (ClipModel::load(vb, &opts).unwrap(), ts)
}

#[test]
fn zero_shot_matches_open_clip() {
    let tok = ClipTokenizer::openai().unwrap();
    for name in ["open_clip_quickgelu", "open_clip_gelu"] {
        let (model, ts) = model(name);
        // Batch size 5 does not divide 12 prompts: exercises the chunking.
        let clf =
            ZeroShotClassifier::new(&model, &tok, &LABELS, &TEMPLATES, 5, &Device::Cpu).unwrap();
        let probs = clf.classify(&model, &ts["inputs.pixel_values"]).unwrap();
        common::assert_close(
            &format!("{name} zero_shot_probs"),
            &probs,
            &ts["outputs.zero_shot_probs"],
            1e-4,
        );
    }
}

#[test]
fn zero_shot_bad_input() {
    let tok = ClipTokenizer::openai().unwrap();
    let (model, _) = model("open_clip_gelu");
    let none: [&str; 0] = [];
    let err =
        ZeroShotClassifier::new(&model, &tok, &none, &TEMPLATES, 8, &Device::Cpu).unwrap_err();
    assert!(matches!(err, ClipError::EmptyInput { .. }), "{err}");
    let err = ZeroShotClassifier::new(&model, &tok, &["cat"], &["no placeholder"], 8, &Device::Cpu)
        .unwrap_err();
    assert!(matches!(err, ClipError::InvalidConfig { .. }), "{err}");
    let err = ZeroShotClassifier::new(&model, &tok, &["  "], &["{}"], 8, &Device::Cpu).unwrap_err();
    assert!(matches!(err, ClipError::EmptyText { index: 0 }), "{err}");
}
