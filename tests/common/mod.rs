//! Helpers shared by the integration tests.
#![allow(dead_code)]

use candle_core::{DType, Tensor};
use segany::core::TensorStore;
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
    (actual.to_dtype(DType::F32).unwrap() - reference.to_dtype(DType::F32).unwrap())
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
