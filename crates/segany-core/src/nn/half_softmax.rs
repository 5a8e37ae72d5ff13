//! Softmax for every device and dtype, summing in f32 for half-precision inputs.
//!
//! candle's CPU `softmax_last_dim` sums the exponentials in the input's dtype: an f16 sum of
//! SAM's 4096 image tokens stops growing once each term falls under half its last place, and
//! the mask decoder's outputs drifted 25% from f32 (measured on the MobileSAM fixture). Its
//! CUDA and Metal kernels, like PyTorch on every device, accumulate in f32; on the CPU the
//! f16/bf16 rows are therefore converted to f32 and back.

use candle_core::{DType, Result, Tensor};

/// `softmax` over the last dimension, in f32 arithmetic for f16/bf16 on the CPU, with
/// segany's kernel on CUDA (`cuda::softmax_rows`, built with the `cuda` feature) and with
/// `candle_nn::ops::softmax_last_dim` everywhere else.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// let x = Tensor::new(&[[0f32, 1., 2.]], &Device::Cpu)?.to_dtype(DType::F16)?;
/// let p = segany_core::nn::softmax_last_dim(&x)?;
/// assert_eq!(p.dtype(), DType::F16);
/// let p: Vec<f32> = p.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
/// assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-3);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    #[cfg(feature = "cuda")]
    if super::cuda::supported(x) {
        return super::cuda::softmax_rows(x);
    }
    if x.device().is_cpu() && matches!(dtype, DType::F16 | DType::BF16) {
        candle_nn::ops::softmax_last_dim(&x.to_dtype(DType::F32)?)?.to_dtype(dtype)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A 4096-wide f16 row of equal logits: candle's f16 sum stalls at 2048 and every
    /// probability doubles; the f32 sum gives 1/4096.
    #[test]
    fn long_half_rows_sum_in_f32() -> Result<()> {
        let x = Tensor::zeros((2, 4096), DType::F16, &Device::Cpu)?;
        let p = softmax_last_dim(&x)?.to_dtype(DType::F32)?;
        let sums: Vec<f32> = p.sum(1)?.to_vec1()?;
        for s in sums {
            assert!((s - 1.0).abs() < 1e-3, "row sums to {s}");
        }
        Ok(())
    }
}
