//! Helpers shared by the integration tests.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use segany::core::TensorStore;
use segany::{BinaryMask, Prompt, SamPredictor};
use std::path::PathBuf;

/// Path under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(rel)
}

/// Loads an expectations file.
pub fn expected(rel: &str) -> TensorStore {
    TensorStore::load(fixture(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

/// Gets a tensor as f32 or panics with its name.
pub fn get(store: &TensorStore, key: &str) -> Tensor {
    store
        .get(key)
        .unwrap_or_else(|| panic!("fixture key {key} missing"))
        .to_dtype(DType::F32)
        .unwrap()
}

/// `max|a − b| / std(b)`: the relative error used throughout the parity tests.
pub fn rel_err(actual: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(actual.dims(), reference.dims(), "shape mismatch");
    let a: Vec<f32> = actual
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let r: Vec<f32> = reference
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let n = r.len() as f64;
    let mean = r.iter().map(|&v| v as f64).sum::<f64>() / n;
    let std = (r.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    let max = a
        .iter()
        .zip(&r)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max);
    max / std.max(1e-12)
}

/// `max|a − b|`.
pub fn max_abs(actual: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(actual.dims(), reference.dims(), "shape mismatch");
    let on_cpu = |t: &Tensor| {
        t.to_device(&Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
    };
    (on_cpu(actual) - on_cpu(reference))
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64
}

/// The prompt stored under `key` in a SAM fixture: `point_coords` + `point_labels`, `box`,
/// `mask_input`, whichever are present.
pub fn prompt_for(exp: &TensorStore, key: &str) -> Prompt {
    let mut p = Prompt::new();
    if let Some(c) = exp.get(&format!("{key}.point_coords")) {
        let c: Vec<Vec<f32>> = c.to_dtype(DType::F32).unwrap().to_vec2().unwrap();
        let l: Vec<f32> = get(exp, &format!("{key}.point_labels")).to_vec1().unwrap();
        for (xy, lab) in c.iter().zip(l) {
            p = if lab == 1.0 {
                p.foreground(xy[0], xy[1])
            } else {
                p.background(xy[0], xy[1])
            };
        }
    }
    if let Some(b) = exp.get(&format!("{key}.box")) {
        let b: Vec<f32> = b.to_dtype(DType::F32).unwrap().to_vec1().unwrap();
        p = p.with_box([b[0], b[1], b[2], b[3]]);
    }
    if let Some(m) = exp.get(&format!("{key}.mask_input")) {
        p = p.with_mask(m.to_dtype(DType::F32).unwrap());
    }
    p
}

/// Runs the prompt case `key` of a SAM fixture through `predictor` and checks it against the
/// reference: low-res logits within `rel_tol` relative ([`rel_err`]), IoU predictions within
/// `iou_tol` absolute, and, where the fixture stores them, every full-resolution mask agreeing
/// on ≥ 99.9% of pixels with a reference that is neither empty nor full.
pub fn check_prompt_case(
    predictor: &SamPredictor,
    exp: &TensorStore,
    key: &str,
    label: &str,
    rel_tol: f64,
    iou_tol: f64,
) {
    check_prompt_case_agreeing(predictor, exp, key, label, (rel_tol, iou_tol, 0.999));
}

/// [`check_prompt_case`] with the masks' minimum pixel agreement as well.
pub fn check_prompt_case_agreeing(
    predictor: &SamPredictor,
    exp: &TensorStore,
    key: &str,
    label: &str,
    (rel_tol, iou_tol, agree_min): (f64, f64, f64),
) {
    let multimask = get(exp, &format!("{key}.multimask"))
        .to_vec1::<f32>()
        .unwrap()[0]
        == 1.0;
    let pred = predictor.predict(&prompt_for(exp, key), multimask).unwrap();
    let e = rel_err(&pred.low_res_logits, &get(exp, &format!("{key}.low_res")));
    let iou = Tensor::new(pred.scores.as_slice(), &Device::Cpu).unwrap();
    let ie = max_abs(&iou, &get(exp, &format!("{key}.iou")));
    println!("{label} {key}: low-res rel err {e:.2e}, iou abs err {ie:.2e}");
    assert!(e < rel_tol, "{key}: low-res logits rel err {e}");
    assert!(ie < iou_tol, "{key}: iou abs err {ie}");
    if let Some(masks) = exp.get(&format!("{key}.masks")) {
        let (k, h, w) = masks.dims3().unwrap();
        assert_eq!(pred.masks.len(), k);
        for (j, m) in pred.masks.iter().enumerate() {
            let data: Vec<u8> = masks
                .get(j)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let reference = BinaryMask::new(h, w, data).unwrap();
            let agree = m.agreement(&reference).unwrap();
            println!(
                "{label} {key} mask {j}: agreement {agree:.6}, area {}",
                reference.area()
            );
            assert!(
                agree >= agree_min,
                "{key} mask {j}: only {agree} of pixels agree"
            );
            assert!(
                reference.area() > 0 && reference.area() < h * w,
                "reference mask is empty or full: the fixture proves nothing"
            );
        }
    }
}

/// The device the parity tests run on: `SEGANY_TEST_DEVICE` (`cpu`, `cuda[:N]`, `metal[:N]`)
/// when set, else the best one compiled in.
pub fn test_device() -> Device {
    segany::core::device_from_env("SEGANY_TEST_DEVICE")
        .unwrap_or_else(|e| panic!("SEGANY_TEST_DEVICE: {e}"))
}

/// MobileSAM fixtures keep the `chelsea` embedding whole or every 8th channel: our channels at
/// that stride `(C', 64, 64)` on the CPU in f32, the reference's, and the stride.
pub fn stored_embedding_channels(emb: &Tensor, exp: &TensorStore) -> (Tensor, Tensor, usize) {
    use candle_core::IndexOp;
    let emb = emb
        .to_device(&Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .i(0)
        .unwrap();
    let (reference, stride) = match exp.get("chelsea.embedding") {
        Some(full) => (full.i(0).unwrap().to_dtype(DType::F32).unwrap(), 1),
        None => (get(exp, "chelsea.embedding_ch8"), 8),
    };
    let idx: Vec<u32> = (0..emb.dim(0).unwrap() as u32).step_by(stride).collect();
    let idx = Tensor::new(idx.as_slice(), &Device::Cpu).unwrap();
    (emb.index_select(&idx, 0).unwrap(), reference, stride)
}

/// The MobileSAM fixture's `chelsea` prompt cases that it stores (at least 3), each through
/// [`check_prompt_case_agreeing`].
pub fn check_mobilesam_cases(
    predictor: &SamPredictor,
    exp: &TensorStore,
    label: &str,
    tols: (f64, f64, f64),
) {
    let mut cases = 0;
    for case in ["point", "two_points", "box", "box_point"] {
        let key = format!("chelsea.{case}");
        if exp.get(&format!("{key}.low_res")).is_none() {
            continue;
        }
        cases += 1;
        check_prompt_case_agreeing(predictor, exp, &key, label, tols);
    }
    assert!(
        cases >= 3,
        "expected at least 3 prompt cases, found {cases}"
    );
}
