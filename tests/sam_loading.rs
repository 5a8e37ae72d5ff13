//! Checkpoint loading, configuration inference, typed errors, embedding persistence, prompt
//! validation and image formats.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{expected, fixture, get, rel_err};
use segany::core::image::load_rgb;
use segany::core::TensorStore;
use segany::{Error, ImageEmbedding, Prompt, Sam, SamConfig, SamPredictor};
use std::collections::HashMap;

const META: &str = "sam/sam_tiny_meta.safetensors";

fn meta_store() -> TensorStore {
    TensorStore::load(fixture(META)).unwrap()
}

fn save_store(store: &TensorStore, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("segany-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    let map: HashMap<String, Tensor> = store
        .keys()
        .iter()
        .map(|k| (k.to_string(), store.get(k).unwrap().clone()))
        .collect();
    candle_core::safetensors::save(&map, &path).unwrap();
    path
}

#[test]
fn infers_configuration_of_bare_meta_file() {
    // The generator built: img 160, patch 16, embed 64, depth 4, heads 4, global [1, 3],
    // window 4, out 32; prompt 32 / mask channels 16; decoder 32, mlp 64, 2 layers, heads 8.
    let cfg = SamConfig::infer_from_tensors(&meta_store()).unwrap();
    let v = &cfg.vision_config;
    assert_eq!(
        (v.hidden_size, v.num_hidden_layers, v.num_attention_heads),
        (64, 4, 4)
    );
    assert_eq!(
        (v.image_size, v.patch_size, v.window_size, v.output_channels),
        (160, 16, 4, 32)
    );
    assert_eq!(v.global_attn_indexes, vec![1, 3]);
    assert_eq!(v.mlp_dim(), 256);
    let m = &cfg.mask_decoder_config;
    assert_eq!(
        (
            m.hidden_size,
            m.mlp_dim,
            m.num_hidden_layers,
            m.num_multimask_outputs
        ),
        (32, 64, 2, 3)
    );
    assert_eq!(
        (
            m.iou_head_depth,
            m.iou_head_hidden_dim,
            m.attention_downsample_rate
        ),
        (3, 32, 2)
    );
    assert_eq!(cfg.prompt_encoder_config.mask_input_channels, 16);
    assert_eq!(cfg.preset_name(), None);
    assert_eq!(SamConfig::vit_h().preset_name(), Some("vit_h"));
}

#[test]
fn presets_match_the_released_models() {
    for (name, e, d, h, g) in [
        ("vit_b", 768, 12, 12, vec![2, 5, 8, 11]),
        ("vit_l", 1024, 24, 16, vec![5, 11, 17, 23]),
        ("vit_h", 1280, 32, 16, vec![7, 15, 23, 31]),
    ] {
        let v = SamConfig::preset(name).unwrap().vision_config;
        assert_eq!(
            (v.hidden_size, v.num_hidden_layers, v.num_attention_heads),
            (e, d, h),
            "{name}"
        );
        assert_eq!(v.global_attn_indexes, g);
        assert_eq!(
            (v.window_size, v.image_size, v.output_channels),
            (14, 1024, 256)
        );
    }
    assert!(SamConfig::preset("vit_x").is_err());
}

#[test]
fn missing_tensors_are_named() {
    let mut store = meta_store();
    store.remove("image_encoder.blocks.2.mlp.lin1.bias");
    store.remove("mask_decoder.iou_token.weight");
    let cfg = SamConfig::infer_from_tensors(&meta_store()).unwrap();
    match Sam::from_store(store, Some(cfg), &Device::Cpu, DType::F32) {
        Err(Error::MissingTensors(names)) => {
            assert!(
                names.contains(&"image_encoder.blocks.2.mlp.lin1.bias".to_string()),
                "{names:?}"
            );
            assert!(
                names.contains(&"mask_decoder.iou_token.weight".to_string()),
                "{names:?}"
            );
        }
        other => panic!("expected MissingTensors, got {other:?}"),
    }
}

#[test]
fn unexpected_tensors_are_named() {
    let mut store = meta_store();
    store.insert(
        "image_encoder.blocks.0.attn.extra",
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    match Sam::from_store(store, None, &Device::Cpu, DType::F32) {
        Err(Error::UnexpectedTensors(names)) => {
            assert_eq!(names, vec!["image_encoder.blocks.0.attn.extra"])
        }
        other => panic!("expected UnexpectedTensors, got {other:?}"),
    }
}

#[test]
fn misshaped_tensors_are_named() {
    let mut store = meta_store();
    store.insert(
        "mask_decoder.transformer.layers.1.mlp.lin2.weight",
        Tensor::zeros((32, 65), DType::F32, &Device::Cpu).unwrap(),
    );
    let cfg = SamConfig::infer_from_tensors(&meta_store()).unwrap();
    match Sam::from_store(store, Some(cfg), &Device::Cpu, DType::F32) {
        Err(Error::ShapeMismatch(m)) => {
            assert_eq!(m.len(), 1);
            assert_eq!(
                m[0].key,
                "mask_decoder.transformer.layers.1.mlp.lin2.weight"
            );
            assert_eq!(
                (m[0].expected.clone(), m[0].found.clone()),
                (vec![32, 64], vec![32, 65])
            );
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
}

#[test]
fn truncated_and_corrupt_files_are_errors() {
    let bytes = std::fs::read(fixture(META)).unwrap();
    let dir = std::env::temp_dir().join(format!("segany-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, data) in [
        ("truncated.safetensors", bytes[..bytes.len() / 2].to_vec()),
        ("header-only.safetensors", bytes[..8].to_vec()),
        (
            "garbage.safetensors",
            b"this is not a checkpoint at all".to_vec(),
        ),
        ("empty.safetensors", vec![]),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        match Sam::load(p.to_str().unwrap(), &Device::Cpu, DType::F32) {
            Err(Error::CorruptCheckpoint { path, .. }) => assert_eq!(path, p),
            other => panic!("{name}: expected CorruptCheckpoint, got {other:?}"),
        }
    }
    match Sam::load("/definitely/not/here.safetensors", &Device::Cpu, DType::F32) {
        Err(Error::Io { path, .. }) => assert!(path.ends_with("here.safetensors")),
        other => panic!("expected Io error, got {other:?}"),
    }
}

#[test]
fn layout_must_be_sam() {
    let mut store = TensorStore::default();
    store.insert(
        "model.weight",
        Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap(),
    );
    assert!(matches!(
        Sam::from_store(store, None, &Device::Cpu, DType::F32),
        Err(Error::UnknownLayout(_))
    ));
}

#[test]
fn half_precision_checkpoints_load_as_f32() {
    // Store the weights as f16 and bf16; loading as f32 must give the f32 model's outputs within
    // the rounding of the weights themselves.
    let exp = expected("sam/expected_meta.safetensors");
    let img = load_rgb(fixture("sam/images/chelsea.png")).unwrap();
    for dt in [DType::F16, DType::BF16] {
        let store = meta_store();
        let keys: Vec<String> = store.keys().iter().map(|s| s.to_string()).collect();
        let half = TensorStore::from_tensors(
            keys.iter()
                .map(|k| (k.clone(), store.get(k).unwrap().to_dtype(dt).unwrap()))
                .collect(),
        );
        let path = save_store(&half, &format!("{dt:?}"));
        let sam = Sam::load(path.to_str().unwrap(), &Device::Cpu, DType::F32).unwrap();
        assert_eq!(sam.dtype(), DType::F32);
        let mut p = SamPredictor::new(sam);
        p.set_image(&img).unwrap();
        let e = rel_err(
            &p.embedding().unwrap().features,
            &get(&exp, "chelsea.embedding"),
        );
        let tol = if dt == DType::F16 { 1e-2 } else { 5e-2 };
        assert!(e < tol, "{dt:?}: embedding rel err {e}");
    }
}

#[test]
fn embedding_round_trips_through_safetensors() {
    let sam = Sam::load(fixture(META).to_str().unwrap(), &Device::Cpu, DType::F32).unwrap();
    let mut p = SamPredictor::new(sam.clone());
    p.set_image(&load_rgb(fixture("sam/images/chelsea.png")).unwrap())
        .unwrap();
    let prompt = Prompt::new().foreground(230.5, 149.25);
    let before = p.predict(&prompt, true).unwrap();
    let path = std::env::temp_dir().join(format!("segany-emb-{}.safetensors", std::process::id()));
    p.embedding().unwrap().save(&path).unwrap();

    let mut q = SamPredictor::new(sam);
    assert!(matches!(q.predict(&prompt, true), Err(Error::NoImage)));
    let emb = ImageEmbedding::load(&path, &Device::Cpu).unwrap();
    assert_eq!(
        (emb.original_size, emb.input_size),
        ((300, 451), (106, 160))
    );
    q.set_embedding(emb).unwrap();
    let after = q.predict(&prompt, true).unwrap();
    assert_eq!(before.scores, after.scores);
    assert_eq!(before.masks, after.masks);
    // A model file is not an embedding.
    assert!(ImageEmbedding::load(fixture(META), &Device::Cpu).is_err());
}

#[test]
fn invalid_prompts_are_rejected() {
    let sam = Sam::load(fixture(META).to_str().unwrap(), &Device::Cpu, DType::F32).unwrap();
    let mut p = SamPredictor::new(sam);
    p.set_image(&load_rgb(fixture("sam/images/chelsea.png")).unwrap())
        .unwrap();
    let bad = [
        Prompt::new(),
        Prompt::new().foreground(f32::NAN, 10.0),
        Prompt::new().foreground(452.0, 10.0),
        Prompt::new().background(10.0, -1.0),
        Prompt::new().with_box([50.0, 50.0, 10.0, 60.0]),
        Prompt::new().with_mask(Tensor::zeros((1, 32, 32), DType::F32, &Device::Cpu).unwrap()),
    ];
    for prompt in bad {
        assert!(
            matches!(p.predict(&prompt, true), Err(Error::InvalidPrompt(_))),
            "{prompt:?}"
        );
    }
    let mixed = [
        Prompt::new().foreground(1.0, 1.0),
        Prompt::new().with_box([0.0, 0.0, 5.0, 5.0]),
    ];
    assert!(matches!(
        p.predict_batch(&mixed, false),
        Err(Error::InvalidPrompt(_))
    ));
}

#[test]
fn rgba_gray_and_16_bit_images_load_as_rgb() {
    let rgb = load_rgb(fixture("sam/images/chelsea.png")).unwrap();
    let dir = std::env::temp_dir().join(format!("segany-img-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // RGBA with a varying alpha: alpha is dropped, colours kept.
    let rgba = image::RgbaImage::from_fn(rgb.width(), rgb.height(), |x, y| {
        let p = rgb.get_pixel(x, y).0;
        image::Rgba([p[0], p[1], p[2], (x % 256) as u8])
    });
    rgba.save(dir.join("rgba.png")).unwrap();
    assert_eq!(load_rgb(dir.join("rgba.png")).unwrap(), rgb);
    // 16-bit RGB holding v * 257: scales back to the same 8-bit values.
    let rgb16 = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(
        rgb.width(),
        rgb.height(),
        |x, y| {
            let p = rgb.get_pixel(x, y).0;
            image::Rgb([p[0] as u16 * 257, p[1] as u16 * 257, p[2] as u16 * 257])
        },
    );
    rgb16.save(dir.join("rgb16.png")).unwrap();
    assert_eq!(load_rgb(dir.join("rgb16.png")).unwrap(), rgb);
    // Grayscale is replicated to three channels.
    let gray = load_rgb(fixture("sam/images/camera.png")).unwrap();
    assert!(gray.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));
    // Not an image.
    assert!(matches!(load_rgb(fixture(META)), Err(Error::Image { .. })));
}
