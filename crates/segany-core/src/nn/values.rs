//! A tensor's values as an f32 slice, for kernels that work on plain slices.

use candle_core::{CpuStorage, DType, Storage, Tensor};

/// Runs `f` on the values of `t` in row-major order: read in place when `t` is a contiguous
/// f32 CPU tensor (no copy), otherwise from a contiguous f32 copy.
pub fn with_f32_values<R, E: From<candle_core::Error>>(
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> Result<R, E>,
) -> Result<R, E> {
    let t = t.contiguous()?;
    {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            return f(&v[a..b]);
        }
    }
    let copy: Vec<f32> = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
    f(&copy)
}

/// Whether `t` is an f32 tensor on the CPU: the condition under which the plain-slice kernels
/// of this crate (and the models' fused CPU paths) take over from candle's operations.
pub fn is_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn reads_contiguous_views_and_copies() -> candle_core::Result<()> {
        let t = Tensor::arange(0f32, 6., &Device::Cpu)?.reshape((2, 3))?;
        let sum = |t: &Tensor| with_f32_values(t, |v| Ok::<_, candle_core::Error>(v.to_vec()));
        assert_eq!(sum(&t)?, vec![0., 1., 2., 3., 4., 5.]);
        // A transposed view and another dtype go through a row-major f32 copy.
        assert_eq!(sum(&t.t()?)?, vec![0., 3., 1., 4., 2., 5.]);
        assert_eq!(sum(&t.to_dtype(DType::F64)?)?, vec![0., 1., 2., 3., 4., 5.]);
        assert!(is_cpu_f32(&t) && !is_cpu_f32(&t.to_dtype(DType::F64)?));
        Ok(())
    }
}
