//! Splitting a fused `qkv` projection into per-head queries, keys and values.

use candle_core::{Result, Tensor};

/// `(q, k, v)`, each `(B·heads, N, head_dim)` and contiguous, from a `(B, N, 3·C)` projection
/// laid out `[q | k | v]` with heads inside each part (SAM's and CLIP's `qkv`). One kernel on
/// CUDA (`cuda::qkv_heads`, built with the `cuda` feature); a permute and copies elsewhere.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let qkv = Tensor::arange(0f32, 12., &Device::Cpu)?.reshape((1, 2, 6))?;
/// let (q, k, v) = segany_core::nn::qkv_heads(&qkv, 1)?;
/// assert_eq!(q.to_vec3::<f32>()?, vec![vec![vec![0., 1.], vec![6., 7.]]]);
/// assert_eq!(v.to_vec3::<f32>()?, vec![vec![vec![4., 5.], vec![10., 11.]]]);
/// # let _ = k;
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn qkv_heads(qkv: &Tensor, heads: usize) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, n, width) = qkv.dims3()?;
    if heads == 0 || width % (3 * heads) != 0 {
        candle_core::bail!("qkv_heads: width {width} is not 3 × {heads} heads")
    }
    let hd = width / (3 * heads);
    #[cfg(feature = "cuda")]
    if super::cuda::supported(qkv) {
        let all = super::cuda::qkv_heads(qkv, heads)?;
        return Ok((all.get(0)?, all.get(1)?, all.get(2)?));
    }
    let all = qkv
        .reshape((b, n, 3, heads, hd))?
        .permute((2, 0, 3, 1, 4))?
        .reshape((3, b * heads, n, hd))?;
    Ok((
        all.get(0)?.contiguous()?,
        all.get(1)?.contiguous()?,
        all.get(2)?.contiguous()?,
    ))
}
