//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

/// `<workspace>/tests/fixtures/clip`.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clip")
}

/// `GOLDEN_DIR`, or `<workspace>/../shared/golden`.
pub fn golden_dir() -> PathBuf {
    match std::env::var_os("GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden"),
    }
}

/// Loads a safetensors file as f32 (integers kept) on the CPU.
pub fn load(path: &std::path::Path) -> HashMap<String, Tensor> {
    let ts = candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()));
    ts.into_iter()
        .map(|(k, t)| {
            let t = if t.dtype().is_float() {
                t.to_dtype(DType::F32).unwrap()
            } else {
                t
            };
            (k, t)
        })
        .collect()
}

/// Tensors under `prefix.` with the prefix removed.
pub fn group(ts: &HashMap<String, Tensor>, prefix: &str) -> HashMap<String, Tensor> {
    let p = format!("{prefix}.");
    ts.iter()
        .filter_map(|(k, v)| k.strip_prefix(&p).map(|s| (s.to_string(), v.clone())))
        .collect()
}

/// The device the parity tests run on: `SEGANY_TEST_DEVICE` (`cpu`, `cuda[:N]`, `metal[:N]`)
/// when set, else the best one compiled in.
pub fn test_device() -> Device {
    segany_core::device_from_env("SEGANY_TEST_DEVICE")
        .unwrap_or_else(|e| panic!("SEGANY_TEST_DEVICE: {e}"))
}

/// `max |a - b| / max |b|`, after checking shapes agree (on the CPU, wherever they live).
pub fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let host = |t: &Tensor| {
        t.to_device(&Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
    };
    let a = host(a).flatten_all().unwrap();
    let b = host(b).flatten_all().unwrap();
    let diff = (&a - &b).unwrap().abs().unwrap().max(0).unwrap();
    let scale = b.abs().unwrap().max(0).unwrap();
    diff.to_scalar::<f32>().unwrap() / scale.to_scalar::<f32>().unwrap().max(1e-12)
}

/// Asserts `rel_err(a, b) <= tol` and prints the measured value.
pub fn assert_close(name: &str, a: &Tensor, b: &Tensor, tol: f32) {
    let e = rel_err(a, b);
    println!("{name}: max|Δ|/max|ref| = {e:.3e} (tolerance {tol:.0e})");
    assert!(e <= tol, "{name}: relative error {e:.3e} > {tol:.0e}");
}
