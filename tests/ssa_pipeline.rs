//! SSA close-set end to end against a Python reference of SSA's pipeline
//! (tools/fixtures/ssa_pipeline_fixtures.py: segment-anything's generator on the tiny random SAM
//! of the AMG fixtures with SSA's `main_ssa.py` settings but lower IoU/stability thresholds,
//! transformers' SegFormer on the tiny random checkpoint, SSA's vote and JSON code), chelsea.png,
//! 48 masks.
//!
//! * `vote_on_reference_branches_is_identical`: our labelling of the reference's own masks and
//!   class map reproduces its JSON exactly (classes, names, order, every RLE string).
//! * `pipeline_matches_reference`: the whole Rust pipeline; same masks, same class for every
//!   mask, and the final semantic map agrees on ≥ 99.9 % of pixels (differences come only from
//!   SegFormer argmax near-ties and the generator's float noise, see segformer_parity/amg_parity).

mod common;

use candle_core::{DType, Device};
use common::fixture;
use segany::automatic::{MaskRecord, Segmentation};
use segany::core::image::load_rgb;
use segany::semantic::{
    label_masks, prediction_from_json, ssa_amg_config, SemanticSegmenter, SsaPipeline,
};
use segany::{Sam, SamAutomaticMaskGenerator};
use segany_data::mask::Rle;
use segany_segformer::ADE20K_CLASSES;
use serde_json::Value;

fn reference() -> (String, Value) {
    let text = std::fs::read_to_string(fixture("ssa/pipeline/expected_semantic.json")).unwrap();
    let v = serde_json::from_str(&text).unwrap();
    (text, v)
}

fn record(a: &Value) -> MaskRecord {
    let seg = &a["segmentation"];
    let size: Vec<usize> = seg["size"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    let rle = Rle::from_string(seg["counts"].as_str().unwrap(), size[0], size[1]).unwrap();
    let arr4 = |k: &str| -> [i64; 4] {
        let v: Vec<i64> = a[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as i64)
            .collect();
        [v[0], v[1], v[2], v[3]]
    };
    let p = &a["point_coords"][0];
    MaskRecord {
        segmentation: Segmentation::Coco(rle),
        area: a["area"].as_u64().unwrap(),
        bbox: arr4("bbox"),
        predicted_iou: a["predicted_iou"].as_f64().unwrap(),
        point_coords: [[p[0].as_f64().unwrap(), p[1].as_f64().unwrap()]],
        stability_score: a["stability_score"].as_f64().unwrap(),
        crop_box: arr4("crop_box"),
    }
}

/// Every number as f64: the reference writes boxes as floats when some batch kept no mask
/// (segment-anything's empty box tensor is float and concatenation promotes the rest).
fn norm(v: &Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), norm(v))).collect()),
        other => other.clone(),
    }
}

fn class_ids() -> Vec<u32> {
    let st = segany::core::TensorStore::load(fixture("ssa/pipeline/branches.safetensors")).unwrap();
    st.get("class_ids")
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<i32>()
        .unwrap()
        .into_iter()
        .map(|v| v as u32)
        .collect()
}

/// Keys of the `semantic_mask` object in file order (with or without spaces after `:`).
fn semantic_keys(text: &str) -> Vec<String> {
    let start = text.find("\"semantic_mask\"").unwrap();
    let section = &text[start + 15..];
    let mut keys = Vec::new();
    let mut from = 0;
    while let Some(i) = section[from..].find("{\"size\"") {
        let head = section[..from + i]
            .trim_end()
            .trim_end_matches(':')
            .trim_end();
        let head = &head[..head.len() - 1]; // the closing quote
        let q = head.rfind('"').unwrap();
        keys.push(head[q + 1..].to_string());
        from += i + 7;
    }
    keys
}

#[test]
fn vote_on_reference_branches_is_identical() {
    let (text, exp) = reference();
    let anns = exp["annotations"].as_array().unwrap();
    assert!(anns.len() >= 20);
    let records: Vec<MaskRecord> = anns.iter().map(record).collect();
    let result = label_masks(records, &class_ids(), 300, 451, &ADE20K_CLASSES).unwrap();
    let ours_text = serde_json::to_string(&result).unwrap();
    let ours: Value = serde_json::from_str(&ours_text).unwrap();
    let (a, b) = (
        ours["annotations"].as_array().unwrap(),
        exp["annotations"].as_array().unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x["class_name"], y["class_name"], "annotation {i}");
        assert!(
            x["class_proposals"].is_string(),
            "class_proposals is a string, as SSA"
        );
        assert!(norm(x) == norm(y), "annotation {i} differs");
    }
    assert!(
        ours["semantic_mask"] == exp["semantic_mask"],
        "semantic_mask differs"
    );
    assert_eq!(semantic_keys(&ours_text), semantic_keys(&text));
    assert_eq!(
        semantic_keys(&text).len(),
        exp["semantic_mask"].as_object().unwrap().len()
    );
}

fn decoded_map(v: &Value) -> Vec<u32> {
    let text = serde_json::json!({"semantic_mask": v["semantic_mask"]}).to_string();
    prediction_from_json(&text).unwrap().2
}

#[test]
fn pipeline_matches_reference() {
    let (_, exp) = reference();
    let cfg = &exp["config"];
    let mut amg = ssa_amg_config();
    amg.pred_iou_thresh = cfg["pred_iou_thresh"].as_f64().unwrap();
    amg.stability_score_thresh = cfg["stability_score_thresh"].as_f64().unwrap();
    assert_eq!(
        amg.points_per_side,
        cfg["points_per_side"].as_u64().map(|x| x as usize)
    );
    let sam = Sam::load(
        fixture("amg/sam_amg_tiny.safetensors").to_str().unwrap(),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    let seg = SemanticSegmenter::load(
        fixture("segformer/tiny").to_str().unwrap(),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    let mut ssa = SsaPipeline::new(
        SamAutomaticMaskGenerator::new(sam, amg).unwrap(),
        seg,
        &ADE20K_CLASSES,
    )
    .unwrap();
    let img = load_rgb(fixture("sam/images/chelsea.png")).unwrap();
    let result = ssa.run(&img).unwrap();
    let ours: Value = serde_json::to_value(&result).unwrap();
    let (a, b) = (
        ours["annotations"].as_array().unwrap(),
        exp["annotations"].as_array().unwrap(),
    );
    assert_eq!(a.len(), b.len(), "mask count");
    // Pair masks by prompt point, crop and nearest box (one point can keep several of its
    // three masks; areas may differ by a pixel and reorder equal-area masks).
    let key = |x: &Value| format!("{}{}", x["point_coords"], norm(&x["crop_box"]));
    let bbox = |x: &Value| -> Vec<f64> {
        x["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let dist = |x: &Value, y: &Value| -> f64 {
        bbox(x)
            .iter()
            .zip(bbox(y))
            .map(|(u, v)| (u - v).abs())
            .sum()
    };
    let mut same_class = 0;
    for x in a {
        let y = b
            .iter()
            .filter(|y| key(y) == key(x))
            .min_by(|p, q| dist(x, p).total_cmp(&dist(x, q)))
            .unwrap_or_else(|| panic!("no reference mask for {}", key(x)));
        assert_eq!(norm(&x["bbox"]), norm(&y["bbox"]));
        same_class += usize::from(x["class_name"] == y["class_name"]);
    }
    eprintln!("{same_class} of {} masks have the reference class", a.len());
    assert_eq!(same_class, a.len());
    let (pa, pb) = (decoded_map(&ours), decoded_map(&exp));
    let agree = pa.iter().zip(&pb).filter(|(x, y)| x == y).count() as f64 / pa.len() as f64;
    eprintln!("semantic map agreement {agree:.6}");
    assert!(agree >= 0.999, "semantic map agreement {agree}");
}
