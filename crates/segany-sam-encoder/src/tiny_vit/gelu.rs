//! Exact (erf) GELU, parallel over both cores on CPU.
//!
//! Same formula and `erf` as candle's `gelu_erf` (`0.5·x·(1 + erf(x/√2))` with
//! `candle_core::cpu::erf::erf_f32`), but split across rayon threads: TinyViT's first stages
//! apply it to maps of 16M values, where candle's single-threaded unary op dominates.

use candle_core::cpu::erf::erf_f32;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

struct ParallelGelu;

impl CustomOp1 for ParallelGelu {
    fn name(&self) -> &'static str {
        "tiny-vit-parallel-gelu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("parallel GELU: contiguous f32 only");
        };
        let mut out = data[start..end].to_vec();
        out.par_chunks_mut(1 << 14).for_each(|chunk| {
            for v in chunk {
                *v = (erf_f32(*v * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * *v;
            }
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// `x · Φ(x)` elementwise, exactly as `Tensor::gelu_erf` (parallel for CPU f32).
pub(crate) fn gelu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1_no_bwd(&ParallelGelu)
    } else {
        x.gelu_erf()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn equals_candle_gelu_erf() {
        let x =
            candle_core::Tensor::randn(0f32, 3.0, (3, 50_000), &candle_core::Device::Cpu).unwrap();
        let a: Vec<f32> = super::gelu(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = x
            .gelu_erf()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(a, b);
    }
}
