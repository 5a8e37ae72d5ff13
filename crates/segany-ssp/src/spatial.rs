//! The spatial prior: CLIP Surgery patch tokens normalised over the **token axis** (as the
//! trained weights expect), the text embedding normalised over channels, their similarity
//! min-max normalised per sample over the patches.

use candle_core::{Result, Tensor, D};

/// L2-normalises `x` along `dim` (no epsilon, as `x / x.norm(dim, keepdim=True)`).
pub fn l2_normalize_along(x: &Tensor, dim: usize) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(dim)?.sqrt()?;
    x.broadcast_div(&norm)
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
