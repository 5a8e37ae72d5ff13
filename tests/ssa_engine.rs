//! SSA-engine labelling (src/semantic/engine) against `tools/fixtures/ssa_engine_parity.py`:
//!
//! * crop geometry: 920 boxes × scales whose crop box mmcv's `imcrop` produced — all equal;
//! * CLIP inputs of real crops vs transformers' CLIPImageProcessor (PIL path) within 1e-5
//!   (the reference fixes Pillow's classic row-then-column pass order; Pillow 13 sometimes
//!   reverses it, see the generator);
//! * end to end on chelsea: the tiny random SAM's automatic masks (same settings as the AMG
//!   fixture case `chelsea_plain`), a 3×3 synthetic close-set map and a fixed vocabulary,
//!   scored by a tiny random CLIP: per mask the same crop box, candidates, proposals and class
//!   name as the Python re-implementation of SSA-engine, probabilities within 1e-4.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use common::{expected, fixture, max_abs};
use segany::automatic::{AmgConfig, OutputMode};
use segany::core::image::load_rgb;
use segany::semantic::engine::{
    clip_processor_pixels, crop_rgb, imcrop_box, CloseSetBranch, EngineConfig, SsaEngine,
};
use segany::{Sam, SamAutomaticMaskGenerator};
use segany_clip::{ClipConfig, ClipModel, ClipTokenizer, Layout, LoadOptions};
use serde_json::Value;

fn json(rel: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(rel)).unwrap()).unwrap()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn crop_boxes_match_mmcv_imcrop() {
    let all = json("ssa_engine/crops.json");
    let cases = all["cases"].as_array().unwrap();
    assert!(cases.len() >= 900);
    let mut empty = 0;
    for c in cases {
        let size = f64s(&c["size"]);
        let b = f64s(&c["bbox"]);
        let want: Vec<i64> = f64s(&c["crop"]).iter().map(|&v| v as i64).collect();
        let got = imcrop_box(
            [b[0], b[1], b[2], b[3]],
            c["scale"].as_f64().unwrap(),
            size[1] as usize,
            size[0] as usize,
        );
        assert_eq!(got.to_vec(), want, "case {c}");
        empty += usize::from(got[2] < got[0] || got[3] < got[1]);
    }
    println!("{} crop boxes equal mmcv's ({empty} empty)", cases.len());
}

fn tiny_clip(dev: &Device) -> ClipModel {
    let store = expected("ssa_engine/clip_tiny.safetensors");
    let cfg_text = std::fs::read_to_string(fixture("ssa_engine/clip_tiny.config.json")).unwrap();
    let cfg = ClipConfig::from_transformers_json(&cfg_text).unwrap();
    let mut map: HashMap<String, Tensor> = HashMap::new();
    for k in store.keys() {
        if let Some(name) = k.strip_prefix("weights.") {
            let t = store.get(k).unwrap().to_dtype(DType::F32).unwrap();
            map.insert(name.to_string(), t);
        }
    }
    let ids: Vec<i64> = store
        .get("sparse.token_embedding.ids")
        .unwrap()
        .to_vec1()
        .unwrap();
    let rows: Vec<Vec<f32>> = store
        .get("sparse.token_embedding.rows")
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec2()
        .unwrap();
    let (vocab, width) = (cfg.text.vocab_size, cfg.text.width);
    let mut dense = vec![0f32; vocab * width];
    for (id, row) in ids.iter().zip(rows) {
        dense[*id as usize * width..(*id as usize + 1) * width].copy_from_slice(&row);
    }
    map.insert(
        "text_model.embeddings.token_embedding.weight".into(),
        Tensor::from_vec(dense, (vocab, width), dev).unwrap(),
    );
    let vb = VarBuilder::from_tensors(map, DType::F32, dev);
    ClipModel::load(
        vb,
        &LoadOptions {
            layout: Some(Layout::Transformers),
            config: Some(cfg),
            activation: None,
        },
    )
    .unwrap()
}

fn amg_config(v: &Value) -> AmgConfig {
    AmgConfig {
        points_per_side: v["points_per_side"].as_u64().map(|x| x as usize),
        pred_iou_thresh: v["pred_iou_thresh"].as_f64().unwrap(),
        stability_score_thresh: v["stability_score_thresh"].as_f64().unwrap(),
        box_nms_thresh: v["box_nms_thresh"].as_f64().unwrap(),
        output_mode: OutputMode::CocoRle,
        ..AmgConfig::default()
    }
}

#[test]
fn engine_matches_python_reimplementation() {
    let dev = Device::Cpu;
    let exp = json("ssa_engine/expected.json");
    let amg = json("amg/expected.json");
    let case = amg["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "chelsea_plain")
        .unwrap();
    assert_eq!(
        case["config"].as_object().unwrap().len(),
        5,
        "config keys read here"
    );
    let img = load_rgb(fixture("sam/images/chelsea.png")).unwrap();
    let sam = Sam::load(
        fixture("amg/sam_amg_tiny.safetensors").to_str().unwrap(),
        &dev,
        DType::F32,
    )
    .unwrap();
    let mut gen = SamAutomaticMaskGenerator::new(sam, amg_config(&case["config"])).unwrap();
    let records = gen.generate(&img).unwrap();
    let masks = exp["masks"].as_array().unwrap();
    assert_eq!(records.len(), masks.len(), "mask count");
    assert!(masks.len() >= 20);

    // CLIP inputs of the first crops vs the PIL CLIPImageProcessor.
    let pixels = expected("ssa_engine/expected.safetensors");
    let (w, h) = (img.width() as usize, img.height() as usize);
    for (i, m) in masks.iter().take(3).enumerate() {
        let b = f64s(&m["bbox"]);
        let crop = crop_rgb(&img, imcrop_box([b[0], b[1], b[2], b[3]], 1.2, w, h)).unwrap();
        let px = clip_processor_pixels(&crop, 64, &dev).unwrap();
        let d = max_abs(&px, pixels.get(&format!("pixels.{i}")).unwrap());
        println!("crop {i}: CLIP pixels max|Δ| = {d:.2e} (tolerance 1e-5)");
        assert!(d <= 1e-5);
    }

    let labels = strings(&exp["grid_labels"]);
    let class_map: Vec<u32> = (0..h)
        .flat_map(|y| (0..w).map(move |x| ((3 * y / h) * 3 + 3 * x / w) as u32))
        .collect();
    let branch = CloseSetBranch {
        class_map,
        width: w,
        height: h,
        labels,
    };
    let vocab = strings(&exp["vocabulary"]);
    let config = EngineConfig {
        captions: false,
        ..EngineConfig::light()
    };
    let mut engine = SsaEngine::new(
        tiny_clip(&dev),
        ClipTokenizer::openai().unwrap(),
        None,
        config,
        &dev,
    );
    let (got, doc) = engine
        .label_records(&img, &records, &[branch], &vocab)
        .unwrap();
    let mut worst = 0f32;
    for (i, (g, m)) in got.iter().zip(masks).enumerate() {
        let want_bbox: Vec<i64> = f64s(&m["bbox"]).iter().map(|&v| v as i64).collect();
        assert_eq!(records[i].bbox.to_vec(), want_bbox, "mask {i} bbox");
        let cs: Vec<i64> = f64s(&m["crop_small"]).iter().map(|&v| v as i64).collect();
        assert_eq!(g.crop_small.to_vec(), cs, "mask {i} crop");
        assert_eq!(
            g.candidates,
            strings(&m["candidates"]),
            "mask {i} candidates"
        );
        for (p, q) in g.probabilities.iter().zip(f64s(&m["probs"])) {
            worst = worst.max((p - q as f32).abs());
        }
        assert_eq!(
            g.class_proposals,
            strings(&m["class_proposals"]),
            "mask {i} proposals"
        );
        assert_eq!(
            g.class_name,
            m["class_name"].as_str().unwrap(),
            "mask {i} class"
        );
    }
    println!(
        "{} masks labelled as the reference; probabilities max|Δ| = {worst:.2e} (tolerance 1e-4)",
        got.len()
    );
    assert!(worst <= 1e-4);

    // The output document is SSA-engine's: SAM fields + class_name + class_proposals.
    let v = serde_json::to_value(&doc).unwrap();
    let first = &v["annotations"][0];
    for key in [
        "segmentation",
        "area",
        "bbox",
        "predicted_iou",
        "point_coords",
        "stability_score",
        "crop_box",
        "class_name",
        "class_proposals",
    ] {
        assert!(first.get(key).is_some(), "record lacks {key}");
    }
    assert_eq!(first["class_proposals"].as_array().unwrap().len(), 3);
    assert!(first["segmentation"]["counts"].is_string());
}

#[test]
fn presets_mirror_ssa_engine() {
    let base = EngineConfig::base();
    let light = EngineConfig::light();
    assert_eq!(base.amg.points_per_side, Some(32));
    assert_eq!(light.amg.points_per_side, Some(16));
    for c in [&base, &light] {
        assert_eq!(c.amg.pred_iou_thresh, 0.86);
        assert_eq!(c.amg.stability_score_thresh, 0.92);
        assert_eq!(c.amg.crop_n_layers, 0);
        assert_eq!(c.amg.crop_n_points_downscale_factor, 2);
        assert_eq!(c.amg.min_mask_region_area, 100);
        assert_eq!(c.amg.output_mode, OutputMode::CocoRle);
        assert_eq!((c.scale_small, c.scale_large, c.top_k), (1.2, 1.6, 3));
    }
    assert_eq!(light.clip_model, "openai/clip-vit-base-patch32");
    assert_eq!(base.blip_model, "Salesforce/blip-image-captioning-large");
}

/// Captions on: each mask's caption is BLIP's (parity-tested in `blip_parity.rs`) on the 1.6
/// crop, and its noun phrases join the candidates.
#[test]
fn captions_feed_candidates() {
    use segany::semantic::engine::Captioner;
    let dev = Device::Cpu;
    let img = load_rgb(fixture("sam/images/chelsea.png")).unwrap();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let blip = fixture("blip/tiny");
    let captioner = Captioner::load(blip.to_str().unwrap(), &dev, DType::F32).unwrap();
    let mut reference = Captioner::load(blip.to_str().unwrap(), &dev, DType::F32).unwrap();
    let config = EngineConfig::light();
    assert!(config.captions);
    let mut engine = SsaEngine::new(
        tiny_clip(&dev),
        ClipTokenizer::openai().unwrap(),
        Some(captioner),
        config,
        &dev,
    );
    let vocab = vec!["cat".to_string()];
    let mut phrases_seen = 0;
    for bbox in [
        [0.0, 0.0, 450.0, 299.0],
        [95.0, 185.0, 35.0, 39.0],
        [41.0, 28.0, 80.0, 215.0],
    ] {
        let label = engine.label_mask(&img, bbox, &vocab).unwrap();
        let large = crop_rgb(&img, imcrop_box(bbox, 1.6, w, h)).unwrap();
        let caption = reference.caption(&large).unwrap();
        assert_eq!(label.caption.as_deref(), Some(caption.as_str()));
        let phrases = segany_blip::noun_phrases(&caption);
        phrases_seen += phrases.len();
        for p in phrases.iter().chain(&vocab) {
            assert!(
                label.candidates.contains(p),
                "{p:?} not in {:?}",
                label.candidates
            );
        }
        let mut sorted = label.candidates.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, label.candidates, "candidates sorted and unique");
        assert_eq!(label.class_proposals.len(), label.candidates.len().min(3));
        println!("{bbox:?}: {caption:?} -> {:?}", label.class_proposals);
    }
    assert!(
        phrases_seen > 0,
        "the captions gave no noun phrase: the test would be vacuous"
    );
}
