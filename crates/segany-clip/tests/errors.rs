//! Bad input gives typed errors that name the key, layout or value at fault.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use segany_clip::{ClipConfig, ClipError, ClipModel, Layout, LoadOptions};

fn transformers_weights() -> (HashMap<String, Tensor>, ClipConfig) {
    let dir = common::fixtures_dir();
    let ts = common::load(&dir.join("transformers_quickgelu.safetensors"));
    let mut w = common::group(&ts, "weights");
    // Dense token embedding (values irrelevant here).
    w.insert(
        "text_model.embeddings.token_embedding.weight".into(),
        Tensor::zeros((49408, 64), DType::F32, &Device::Cpu).unwrap(),
    );
    let json = std::fs::read_to_string(dir.join("transformers_quickgelu.config.json")).unwrap();
    (w, ClipConfig::from_transformers_json(&json).unwrap())
}

fn load(w: HashMap<String, Tensor>, cfg: Option<ClipConfig>) -> Result<ClipModel, ClipError> {
    let vb = VarBuilder::from_tensors(w, DType::F32, &Device::Cpu);
    ClipModel::load(
        vb,
        &LoadOptions {
            config: cfg,
            ..Default::default()
        },
    )
}

#[test]
fn unknown_layout() {
    let w: HashMap<String, Tensor> = [(
        "model.encoder.weight".to_string(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    )]
    .into();
    let err = load(w, None).unwrap_err();
    assert!(matches!(err, ClipError::UnknownLayout { .. }), "{err}");
    println!("{err}");
}

#[test]
fn missing_key_names_checkpoint_and_canonical_key() {
    let (mut w, cfg) = transformers_weights();
    let key = "vision_model.encoder.layers.1.self_attn.k_proj.weight";
    w.remove(key);
    let err = load(w, Some(cfg)).unwrap_err();
    println!("{err}");
    match err {
        ClipError::MissingKey {
            layout,
            key: k,
            canonical,
        } => {
            assert_eq!(layout, Layout::Transformers);
            assert_eq!(k, key);
            assert_eq!(
                canonical,
                "visual.transformer.resblocks.1.attn.in_proj_weight"
            );
        }
        other => panic!("expected MissingKey, got {other}"),
    }
}

#[test]
fn missing_key_when_inferring_geometry() {
    let (mut w, _) = transformers_weights();
    w.remove("text_projection.weight");
    let err = load(w, None).unwrap_err();
    assert!(
        matches!(&err, ClipError::MissingKey { key, .. } if key == "text_projection.weight"),
        "{err}"
    );
}

#[test]
fn shape_mismatch() {
    let (mut w, cfg) = transformers_weights();
    w.insert(
        "vision_model.post_layernorm.weight".into(),
        Tensor::ones(63, DType::F32, &Device::Cpu).unwrap(),
    );
    let err = load(w, Some(cfg)).unwrap_err();
    println!("{err}");
    assert!(
        matches!(&err, ClipError::ShapeMismatch { key, expected, actual }
            if key.contains("visual.ln_post.weight") && expected == &[64] && actual == &[63]),
        "{err}"
    );
}

#[test]
fn bad_configs() {
    let err = ClipConfig::from_transformers_json("{ not json").unwrap_err();
    assert!(matches!(err, ClipError::ConfigParse { .. }), "{err}");
    let err = ClipConfig::from_transformers_json(r#"{"text_config": {"hidden_act": "swish"}}"#)
        .unwrap_err();
    assert!(
        matches!(&err, ClipError::InvalidConfig { field, value, .. }
            if field == "text_config.hidden_act" && value == "swish"),
        "{err}"
    );
    let err = ClipConfig::from_transformers_json(
        r#"{"vision_config": {"hidden_size": 100, "num_attention_heads": 3}}"#,
    )
    .unwrap_err();
    assert!(matches!(err, ClipError::InvalidConfig { .. }), "{err}");
}

#[test]
fn bad_pixels_and_ids() {
    let (w, cfg) = transformers_weights();
    let model = load(w, Some(cfg)).unwrap();
    let px = Tensor::zeros((1, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
    let err = model.encode_image(&px).unwrap_err();
    assert!(
        matches!(err, ClipError::ImageShape { size: 64, .. }),
        "{err}"
    );
    let ids = Tensor::new(&[[49406i64, 60000, 49407]], &Device::Cpu).unwrap();
    let err = model.encode_text(&ids).unwrap_err();
    assert!(matches!(err, ClipError::TokenIds { .. }), "{err}");
    let ids = Tensor::zeros((1, 78), DType::I64, &Device::Cpu).unwrap();
    let err = model.encode_text(&ids).unwrap_err();
    assert!(matches!(err, ClipError::TokenIds { .. }), "{err}");
}
