//! Device and dtype selection from user-facing strings.

use crate::{Error, Result};
use candle_core::{DType, Device};

/// Parses a device name: `cpu`, `cuda`, `cuda:N`, `metal` or `metal:N`.
///
/// Asking for a device whose cargo feature was not compiled in is an error that says which
/// feature to enable.
///
/// ```
/// let dev = segany_core::parse_device("cpu").unwrap();
/// assert!(dev.is_cpu());
/// assert!(segany_core::parse_device("tpu").is_err());
/// ```
pub fn parse_device(name: &str) -> Result<Device> {
    let lower = name.trim().to_ascii_lowercase();
    let (kind, ordinal) = match lower.split_once(':') {
        Some((k, n)) => {
            let n: usize = n
                .parse()
                .map_err(|_| Error::InvalidArgument(format!("bad device ordinal in {name:?}")))?;
            (k.to_string(), n)
        }
        None => (lower.clone(), 0),
    };
    match kind.as_str() {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if !cfg!(feature = "cuda") {
                return Err(Error::InvalidArgument(
                    "device cuda requested but segany was built without the `cuda` feature".into(),
                ));
            }
            Ok(Device::new_cuda(ordinal)?)
        }
        "metal" => {
            if !cfg!(feature = "metal") {
                return Err(Error::InvalidArgument(
                    "device metal requested but segany was built without the `metal` feature"
                        .into(),
                ));
            }
            Ok(Device::new_metal(ordinal)?)
        }
        _ => Err(Error::InvalidArgument(format!(
            "unknown device {name:?} (expected cpu, cuda[:N] or metal[:N])"
        ))),
    }
}

/// The best device compiled in: CUDA if available, else Metal, else CPU.
pub fn best_device() -> Device {
    if candle_core::utils::cuda_is_available() {
        if let Ok(d) = Device::new_cuda(0) {
            return d;
        }
    }
    if candle_core::utils::metal_is_available() {
        if let Ok(d) = Device::new_metal(0) {
            return d;
        }
    }
    Device::Cpu
}

/// The device named by the environment variable `var` ([`parse_device`]), or [`best_device`]
/// when it is unset (how segany's tests and benches pick theirs: `SEGANY_TEST_DEVICE`,
/// `SEGANY_BENCH_DEVICE`).
///
/// ```
/// std::env::set_var("MY_APP_DEVICE", "cpu");
/// assert!(segany_core::device_from_env("MY_APP_DEVICE")?.is_cpu());
/// std::env::set_var("MY_APP_DEVICE", "tpu");
/// assert!(segany_core::device_from_env("MY_APP_DEVICE").is_err());
/// # Ok::<(), segany_core::Error>(())
/// ```
pub fn device_from_env(var: &str) -> Result<Device> {
    match std::env::var(var) {
        Ok(name) => parse_device(&name),
        Err(_) => Ok(best_device()),
    }
}

/// Parses a dtype name: `f32`, `f16`, `bf16` (also `float32`, `half`, `bfloat16`).
///
/// ```
/// assert_eq!(segany_core::parse_dtype("bf16").unwrap(), candle_core::DType::BF16);
/// ```
pub fn parse_dtype(name: &str) -> Result<DType> {
    parse_dtype_inner(name)
}

/// Parses the CPU products' arithmetic: `f32` (the default, the reference's arithmetic) or
/// `bf16` ([`crate::nn::CpuMatmul::Bf16`], opt-in, on CPUs with AVX-512 BF16).
///
/// ```
/// use segany_core::{nn::CpuMatmul, parse_cpu_matmul};
/// assert_eq!(parse_cpu_matmul("bf16")?, CpuMatmul::Bf16);
/// assert!(parse_cpu_matmul("f16").is_err());
/// # Ok::<(), segany_core::Error>(())
/// ```
pub fn parse_cpu_matmul(name: &str) -> Result<crate::nn::CpuMatmul> {
    match name.trim().to_ascii_lowercase().as_str() {
        "f32" | "float32" => Ok(crate::nn::CpuMatmul::F32),
        "bf16" | "bfloat16" => Ok(crate::nn::CpuMatmul::Bf16),
        other => Err(Error::InvalidArgument(format!(
            "unknown CPU matmul arithmetic {other:?} (expected f32 or bf16)"
        ))),
    }
}

fn parse_dtype_inner(name: &str) -> Result<DType> {
    match name.trim().to_ascii_lowercase().as_str() {
        "f32" | "float32" | "float" => Ok(DType::F32),
        "f16" | "float16" | "half" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f64" | "float64" => Ok(DType::F64),
        other => Err(Error::InvalidArgument(format!(
            "unknown dtype {other:?} (expected f32, f16 or bf16)"
        ))),
    }
}
