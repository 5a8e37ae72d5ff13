//! Element-wise sums kept off candle's element-wise thread pool.
//!
//! From 64K values on, candle (0.11) splits an element-wise operation over its own pool of
//! `threads − 1` workers, and each worker then spins for 25,000 rounds before it parks. The
//! products that follow run on rayon's threads; on a 2-core machine the spinning worker takes
//! a core from them. Measured on the SSP-SAM head (five such operations per call): its
//! worker held 7.7% of the samples and the head ran 2–3 ms (10%) slower than with a 100-round
//! spin (`CANDLE_BARRIER_POOL_SPIN_LIMIT`, which a library cannot set for its users). The
//! sums here are of token-sized tensors (a decoder batch of 64 prompts: 115K values), cheap on
//! the calling thread.

use super::is_cpu_f32;
use super::values::with_f32_values;
use candle_core::{Result, Tensor};
use rayon::prelude::*;

/// Values from which [`add`] splits the sum over rayon's threads, in chunks of `CHUNK`.
const PARALLEL_VALUES: usize = 1 << 20;
const CHUNK: usize = 1 << 16;

/// `a + b` for tensors of one shape. On the CPU in f32 a plain loop on the calling thread
/// (rayon's threads from a million values on); elsewhere candle's sum. The same values as
/// `a + b` either way.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let a = Tensor::new(&[1f32, 2., 3.], &Device::Cpu)?;
/// let b = Tensor::new(&[0.5f32, 0.25, -3.], &Device::Cpu)?;
/// let sum = segany_core::nn::add(&a, &b)?;
/// assert_eq!(sum.to_vec1::<f32>()?, [1.5, 2.25, 0.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !(is_cpu_f32(a) && is_cpu_f32(b)) || a.shape() != b.shape() {
        return a + b;
    }
    let out = with_f32_values(a, |x| {
        with_f32_values(b, |y| {
            let mut out = x.to_vec();
            let sum = |o: &mut [f32], y: &[f32]| o.iter_mut().zip(y).for_each(|(o, y)| *o += y);
            if out.len() < PARALLEL_VALUES {
                sum(&mut out, y);
            } else {
                out.par_chunks_mut(CHUNK)
                    .zip(y.par_chunks(CHUNK))
                    .for_each(|(o, y)| sum(o, y));
            }
            Ok::<_, candle_core::Error>(out)
        })
    })?;
    Tensor::from_vec(out, a.shape(), a.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Equal to candle's sum below and above the parallel size, for a transposed (strided)
    /// operand, and candle's shape error for mismatched shapes.
    #[test]
    fn add_equals_candles_sum() -> Result<()> {
        let dev = Device::Cpu;
        for n in [7 * 256, PARALLEL_VALUES + 77] {
            let a = Tensor::randn(0f32, 1.0, n, &dev)?;
            let b = Tensor::randn(0f32, 1.0, n, &dev)?;
            let same = add(&a, &b)?.eq(&(&a + &b)?)?.min_all()?.to_scalar::<u8>()?;
            assert_eq!(same, 1, "{n} values");
        }
        let a = Tensor::randn(0f32, 1.0, (3, 5), &dev)?;
        let b = Tensor::randn(0f32, 1.0, (5, 3), &dev)?.t()?;
        let same = add(&a, &b)?.eq(&(&a + &b)?)?.min_all()?.to_scalar::<u8>()?;
        assert_eq!(same, 1, "strided operand");
        assert!(add(&a, &a.t()?).is_err());
        Ok(())
    }
}
