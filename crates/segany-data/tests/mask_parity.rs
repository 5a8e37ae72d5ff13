//! Bit-exact parity of `segany_data::mask` with pycocotools.
//!
//! Expected values come from `tools/fixtures/data_masks.py`, which calls
//! pycocotools 2.0.11 (`frPyObjects`, `encode`, `decode`, `merge`, `area`,
//! `toBbox`, `iou`) on seeded random inputs.

use segany_data::mask::{bbox_iou, merge, polygons_to_rles, rle_iou, Mask, Rle};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!(
        "{}/../../tests/fixtures/data/masks/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn usize_of(v: &Value) -> usize {
    v.as_u64().expect("integer") as usize
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("count") as u32)
        .collect()
}

/// Checks string, counts, area and bbox of `rle` against one fixture record.
fn check_record(rle: &Rle, rec: &Value, what: &str) {
    assert_eq!(rle.to_string(), rec["string"].as_str().unwrap(), "{what}");
    assert_eq!(rle.counts(), u32s(&rec["counts"]).as_slice(), "{what}");
    assert_eq!(
        u64::from(rle.area()),
        rec["area"].as_u64().unwrap(),
        "{what}"
    );
    assert_eq!(rle.to_bbox().to_vec(), f64s(&rec["bbox"]), "{what}");
}

#[test]
fn polygons_match_pycocotools_fr_poly() {
    let fx = load("polygons.json");
    let cases = fx["polygons"].as_array().unwrap();
    assert!(cases.len() >= 1000);
    let mut kinds = std::collections::BTreeMap::new();
    for (i, c) in cases.iter().enumerate() {
        let (h, w) = (usize_of(&c["h"]), usize_of(&c["w"]));
        let rle = Rle::from_polygon(&f64s(&c["poly"]), h, w).unwrap();
        check_record(&rle, c, &format!("polygon {i} ({})", c["kind"]));
        // the string decodes back to the same counts
        let back = Rle::from_string(c["string"].as_str().unwrap(), h, w).unwrap();
        assert_eq!(back, rle, "polygon {i} string round trip");
        *kinds
            .entry(c["kind"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(kinds.len(), 6, "{kinds:?}");
}

#[test]
fn boxes_match_pycocotools_fr_bbox() {
    let fx = load("polygons.json");
    for (i, c) in fx["boxes"].as_array().unwrap().iter().enumerate() {
        let (h, w) = (usize_of(&c["h"]), usize_of(&c["w"]));
        let b = f64s(&c["bbox_in"]);
        let rle = Rle::from_bbox([b[0], b[1], b[2], b[3]], h, w).unwrap();
        check_record(&rle, c, &format!("box {i}"));
    }
}

#[test]
fn multi_polygon_sum_matches_refer_get_mask() {
    let fx = load("polygons.json");
    for (i, c) in fx["multi"].as_array().unwrap().iter().enumerate() {
        let (h, w) = (usize_of(&c["h"]), usize_of(&c["w"]));
        let polys: Vec<Vec<f64>> = c["polys"].as_array().unwrap().iter().map(f64s).collect();
        let rles = polygons_to_rles(&polys, h, w).unwrap();
        let strings: Vec<String> = rles.iter().map(|r| r.to_string()).collect();
        let expect: Vec<&str> = c["strings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(strings, expect, "multi {i}");
        let mut sum = Mask::zeros(h, w);
        for r in &rles {
            sum.wrapping_add_assign(&r.decode().unwrap()).unwrap();
        }
        let mut expect_sum = Vec::with_capacity(h * w);
        for run in c["sum_runs"].as_array().unwrap() {
            let (v, n) = (run[0].as_u64().unwrap() as u8, usize_of(&run[1]));
            expect_sum.extend(std::iter::repeat_n(v, n));
        }
        assert_eq!(sum.as_slice(), expect_sum.as_slice(), "multi {i}");
        let area: u64 = rles.iter().map(|r| u64::from(r.area())).sum();
        assert_eq!(area, c["area_sum"].as_u64().unwrap(), "multi {i}");
    }
}

fn mask_of(bits: &str, h: usize, w: usize) -> Mask {
    Mask::from_vec(h, w, bits.bytes().map(|b| b - b'0').collect()).unwrap()
}

#[test]
fn masks_encode_decode_merge_iou_match_pycocotools() {
    let fx = load("masks.json");
    for (gi, g) in fx["groups"].as_array().unwrap().iter().enumerate() {
        let (h, w) = (usize_of(&g["h"]), usize_of(&g["w"]));
        let mut rles = Vec::new();
        for (mi, m) in g["masks"].as_array().unwrap().iter().enumerate() {
            let mask = mask_of(m["bits"].as_str().unwrap(), h, w);
            let rle = Rle::encode(&mask).unwrap();
            check_record(&rle, m, &format!("group {gi} mask {mi}"));
            assert_eq!(rle.decode().unwrap(), mask, "group {gi} mask {mi} decode");
            rles.push(rle);
        }
        for (key, set, inter) in [
            ("union2", &rles[..2], false),
            ("inter2", &rles[..2], true),
            ("union3", &rles[..], false),
            ("inter3", &rles[..], true),
        ] {
            let m = merge(set, inter).unwrap();
            assert_eq!(m.to_string(), g[key].as_str().unwrap(), "group {gi} {key}");
        }
        let crowd: Vec<bool> = g["iscrowd"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_bool().unwrap())
            .collect();
        let iou = rle_iou(&rles, &rles, &crowd);
        let expect: Vec<Vec<f64>> = g["iou"].as_array().unwrap().iter().map(f64s).collect();
        assert_eq!(iou, expect, "group {gi} iou");
        let boxes: Vec<[f64; 4]> = rles.iter().map(Rle::to_bbox).collect();
        let expect: Vec<Vec<f64>> = g["bbox_iou"].as_array().unwrap().iter().map(f64s).collect();
        assert_eq!(
            bbox_iou(&boxes, &boxes, &crowd),
            expect,
            "group {gi} bbox iou"
        );
    }
}

#[test]
fn long_strings_match_pycocotools() {
    let fx = load("masks.json");
    for (i, c) in fx["long"].as_array().unwrap().iter().enumerate() {
        let (h, w) = (usize_of(&c["h"]), usize_of(&c["w"]));
        let rle = Rle::new(h, w, u32s(&c["counts"])).unwrap();
        check_record(&rle, c, &format!("long {i}"));
        let back = Rle::from_string(c["string"].as_str().unwrap(), h, w).unwrap();
        assert_eq!(back, rle, "long {i}");
    }
}
