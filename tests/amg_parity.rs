//! Automatic mask generation vs segment-anything's `SamAutomaticMaskGenerator` (fixtures from
//! `tools/fixtures/amg_fixtures.py`: a tiny random-weight SAM tuned to give local masks, two real
//! images, four configurations covering crop layers, min_mask_region_area, uneven batches and all
//! output modes; every case keeps at least 20 masks).
//!
//! Per case: the same number of masks in the same order, identical boxes and crop boxes, mask
//! IoU ≥ 0.99, identical RLE (compressed string, uncompressed counts, binary pixels) wherever
//! the pixels agree, predicted IoU within 1e-4 and stability score within 1e-2. (Boxes are
//! compared as numbers: the reference writes them as floats whenever some batch kept no mask,
//! because its empty-batch box tensor is float and concatenation promotes the rest.)

mod common;

use candle_core::DType;
use common::fixture;
use segany::automatic::{AmgConfig, OutputMode, Segmentation};
use segany::core::image::load_rgb;
use segany::{Sam, SamAutomaticMaskGenerator};
use segany_data::mask::Rle;
use serde_json::Value;

fn config_from(v: &Value) -> AmgConfig {
    let mut c = AmgConfig::default();
    let f = |k: &str| v.get(k).and_then(Value::as_f64);
    let u = |k: &str| v.get(k).and_then(Value::as_u64).map(|x| x as usize);
    if let Some(x) = u("points_per_side") {
        c.points_per_side = Some(x);
    }
    if let Some(x) = u("points_per_batch") {
        c.points_per_batch = x;
    }
    if let Some(x) = f("pred_iou_thresh") {
        c.pred_iou_thresh = x;
    }
    if let Some(x) = f("stability_score_thresh") {
        c.stability_score_thresh = x;
    }
    if let Some(x) = f("stability_score_offset") {
        c.stability_score_offset = x;
    }
    if let Some(x) = f("box_nms_thresh") {
        c.box_nms_thresh = x;
    }
    if let Some(x) = u("crop_n_layers") {
        c.crop_n_layers = x;
    }
    if let Some(x) = f("crop_nms_thresh") {
        c.crop_nms_thresh = x;
    }
    if let Some(x) = u("crop_n_points_downscale_factor") {
        c.crop_n_points_downscale_factor = x;
    }
    if let Some(x) = u("min_mask_region_area") {
        c.min_mask_region_area = x;
    }
    if let Some(x) = v.get("output_mode").and_then(Value::as_str) {
        c.output_mode = x.parse().unwrap();
    }
    c
}

fn iou(a: &[u8], b: &[u8]) -> f64 {
    let (mut i, mut u) = (0u64, 0u64);
    for (&x, &y) in a.iter().zip(b) {
        i += u64::from(x != 0 && y != 0);
        u += u64::from(x != 0 || y != 0);
    }
    if u == 0 {
        1.0
    } else {
        i as f64 / u as f64
    }
}

fn run_case(name: &str) {
    let text = std::fs::read_to_string(fixture("amg/expected.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    let case = all["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("case {name} missing"));
    let cfg = config_from(&case["config"]);
    let mode = cfg.output_mode;
    let sam = Sam::load(
        fixture("amg/sam_amg_tiny.safetensors").to_str().unwrap(),
        &common::test_device(),
        DType::F32,
    )
    .unwrap();
    let image = case["image"].as_str().unwrap();
    let img = load_rgb(fixture(&format!("sam/images/{image}.png"))).unwrap();
    let mut generator = SamAutomaticMaskGenerator::new(sam, cfg).unwrap();
    let got = generator.generate(&img).unwrap();
    let exp = case["records"].as_array().unwrap();
    assert!(exp.len() >= 20, "{name}: fixture keeps only {}", exp.len());
    assert_eq!(got.len(), exp.len(), "{name}: number of masks");
    let (mut min_iou, mut identical, mut max_diou, mut max_dstab) = (1.0f64, 0, 0f64, 0f64);
    for (i, (g, e)) in got.iter().zip(exp).enumerate() {
        let ebox: Vec<i64> = e["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as i64)
            .collect();
        assert_eq!(g.bbox.to_vec(), ebox, "{name}[{i}]: bbox");
        let ecrop: Vec<i64> = e["crop_box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as i64)
            .collect();
        assert_eq!(g.crop_box.to_vec(), ecrop, "{name}[{i}]: crop_box");
        let ep = &e["point_coords"][0];
        for k in 0..2 {
            let d = (g.point_coords[0][k] - ep[k].as_f64().unwrap()).abs();
            assert!(d < 1e-9, "{name}[{i}]: point_coords");
        }
        let diou = (g.predicted_iou - e["predicted_iou"].as_f64().unwrap()).abs();
        let dstab = (g.stability_score - e["stability_score"].as_f64().unwrap()).abs();
        max_diou = max_diou.max(diou);
        max_dstab = max_dstab.max(dstab);
        let seg = &e["segmentation"];
        let size: Vec<usize> = seg["size"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let erle = Rle::from_string(seg["counts"].as_str().unwrap(), size[0], size[1]).unwrap();
        let grle = g.segmentation.to_rle().unwrap();
        let (em, gm) = (erle.decode().unwrap(), grle.decode().unwrap());
        let m_iou = iou(em.as_slice(), gm.as_slice());
        min_iou = min_iou.min(m_iou);
        assert!(m_iou >= 0.99, "{name}[{i}]: mask IoU {m_iou}");
        if em.as_slice() == gm.as_slice() {
            identical += 1;
            assert_eq!(
                grle.to_string(),
                erle.to_string(),
                "{name}[{i}]: RLE string"
            );
            assert_eq!(g.area, e["area"].as_u64().unwrap(), "{name}[{i}]: area");
            match (&g.segmentation, mode) {
                (Segmentation::Uncompressed(r), OutputMode::UncompressedRle) => {
                    let c: Vec<u32> = e["uncompressed_counts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_u64().unwrap() as u32)
                        .collect();
                    assert_eq!(r.counts(), c.as_slice(), "{name}[{i}]: uncompressed counts");
                }
                (Segmentation::Coco(_), OutputMode::CocoRle) => {
                    let j = serde_json::to_value(&g.segmentation).unwrap();
                    assert_eq!(&j, seg, "{name}[{i}]: coco_rle JSON");
                }
                (Segmentation::Binary { data, .. }, OutputMode::BinaryMask) => {
                    assert_eq!(data.as_slice(), em.as_slice(), "{name}[{i}]: binary mask");
                }
                _ => panic!("{name}: wrong segmentation variant for {mode:?}"),
            }
        }
    }
    eprintln!(
        "{name}: {} masks, {identical} pixel-identical, min IoU {min_iou:.5}, max |Δ predicted_iou| {max_diou:.2e}, max |Δ stability| {max_dstab:.2e}",
        got.len()
    );
    assert!(
        max_diou < 1e-4,
        "{name}: predicted_iou differs by {max_diou}"
    );
    assert!(max_dstab < 1e-2, "{name}: stability differs by {max_dstab}");
}

#[test]
fn amg_chelsea_plain_coco_rle() {
    run_case("chelsea_plain");
}

#[test]
fn amg_chelsea_crops_min_region_uncompressed_rle() {
    run_case("chelsea_crops");
}

#[test]
fn amg_camera_two_crop_layers_coco_rle() {
    run_case("camera_crops");
}

#[test]
fn amg_camera_binary_mask() {
    run_case("camera_binary");
}
