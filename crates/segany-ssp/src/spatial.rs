//! The spatial prior: CLIP Surgery patch tokens normalised over the **token axis** (as the
//! trained weights expect), the text embedding normalised over channels, their similarity
//! min-max normalised per sample over the patches.

use candle_core::{Result, Tensor, D};
use segany_core::nn::{is_cpu_f32, with_f32_values};

/// L2-normalises `x` along `dim` (no epsilon, as `x / x.norm(dim, keepdim=True)`).
///
/// On the CPU in f32 one pass over the values, the composition's operations in sequential
/// sums (candle's operations would, from 64K values on, also wake candle's element-wise thread
/// pool, whose worker then spins beside the next products).
pub fn l2_normalize_along(x: &Tensor, dim: usize) -> Result<Tensor> {
    if is_cpu_f32(x) {
        return normalize_cpu(x, dim);
    }
    let norm = x.sqr()?.sum_keepdim(dim)?.sqrt()?;
    x.broadcast_div(&norm)
}

fn normalize_cpu(x: &Tensor, dim: usize) -> Result<Tensor> {
    let n = x.dim(dim)?;
    let inner: usize = x.dims()[dim + 1..].iter().product();
    if n * inner == 0 {
        return Ok(x.clone());
    }
    let out = with_f32_values(x, |v| {
        let mut out = v.to_vec();
        let mut norm = vec![0f32; inner];
        for block in out.chunks_exact_mut(n * inner) {
            norm.fill(0.0);
            for row in block.chunks_exact(inner) {
                for (s, &v) in norm.iter_mut().zip(row) {
                    *s += v * v;
                }
            }
            for s in norm.iter_mut() {
                *s = s.sqrt();
            }
            for row in block.chunks_exact_mut(inner) {
                for (v, &s) in row.iter_mut().zip(&norm) {
                    *v /= s;
                }
            }
        }
        Ok::<_, candle_core::Error>(out)
    })?;
    Tensor::from_vec(out, x.shape(), x.device())
}

/// `image_tokens (B, 1+P², C)` already normalised over axis 1, `text (B, C)` already
/// normalised over channels → the `(B, P², 1)` similarity map of the patches, min-max
/// normalised per sample (CLIP Surgery's `get_similarity_map` without resizing).
pub fn similarity_map(image_tokens: &Tensor, text: &Tensor) -> Result<Tensor> {
    let n = image_tokens.dim(1)?;
    let sim = image_tokens.matmul(&text.unsqueeze(D::Minus1)?)?; // (B, 1+P², 1)
    let sim = sim.narrow(1, 1, n - 1)?;
    let min = sim.min_keepdim(1)?;
    let max = sim.max_keepdim(1)?;
    sim.broadcast_sub(&min)?.broadcast_div(&(max - &min)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// The CPU pass against candle's composition, along the middle and the last axis: within
    /// two f32 roundings of values of at most 1 (candle sums a last axis in another order),
    /// and zero-sized inputs pass through.
    #[test]
    fn cpu_normalisation_equals_the_composition() -> Result<()> {
        let x = Tensor::randn(0f32, 1.0, (2, 197, 40), &Device::Cpu)?;
        for dim in [1, 2] {
            let fast = l2_normalize_along(&x, dim)?;
            let norm = x.sqr()?.sum_keepdim(dim)?.sqrt()?;
            let plain = x.broadcast_div(&norm)?;
            let diff = (fast - plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff <= 2.5e-7, "dim {dim}: max |Δ| {diff:e}");
        }
        let empty = Tensor::zeros((1, 0, 4), DType::F32, &Device::Cpu)?;
        assert_eq!(l2_normalize_along(&empty, 1)?.dims(), [1, 0, 4]);
        Ok(())
    }
}
