//! What the factored decoder path keeps of an image-to-token step.

use super::BufferPool;

/// One image-to-token step, `out = norm(x + A·U + b)` per prompt and image token, factored:
/// `A` the attention probabilities, `U (B, heads·Nt, D)` the token values
/// through `out_proj`, `b` its bias, and per token the norm's `mean` and `inv`
/// (`1/sqrt(var + eps)`), with the norm's `gamma` and `beta`:
/// `out[p] = inv[p]·(x[p] + A[p]·U + b − mean[p])·gamma + beta`.
///
/// `A` is kept token-minor in tiles of `TILE_ROWS` image tokens: per prompt and tile
/// starting at token `t0`, a `(heads·Nt, rows)` block at `(bb·N + t0)·heads·Nt` (the
/// kernels that read it run across the tokens).
#[derive(Debug, Clone)]
pub struct ImageUpdate {
    pub(crate) b: usize,
    pub(crate) n: usize,
    pub(crate) d: usize,
    pub(crate) hn: usize,
    pub(crate) a: Vec<f32>,
    pub(crate) u: Vec<f32>,
    pub(crate) bias: Vec<f32>,
    pub(crate) mean: Vec<f32>,
    pub(crate) inv: Vec<f32>,
    pub(crate) gamma: Vec<f32>,
    pub(crate) beta: Vec<f32>,
    /// The attention's token values `(B, Nt, Di)`, its `out_proj` weight `(D, Di)` and its
    /// number of heads: per head `U_h = v_h·W_o,hᵀ`, so a projection of the rows of `U` can go
    /// through `W_o` once per batch instead of through `U` per prompt
    /// ([`super::LowRankKeys::projector`]).
    pub(crate) v: Vec<f32>,
    pub(crate) wo: Vec<f32>,
    pub(crate) heads: usize,
    /// Where `a` goes when the update is dropped.
    pub(crate) pool: Option<BufferPool>,
}

impl ImageUpdate {
    /// Prompt `bb`'s token values `(Nt, heads·c)`, with `(heads, Nt, c)`: per head
    /// `U_h = v_h·W_o,hᵀ`.
    pub(crate) fn prompt_values(&self, bb: usize) -> (&[f32], (usize, usize, usize)) {
        let (h, nt) = (self.heads, self.hn / self.heads);
        let di = self.wo.len() / self.d;
        (&self.v[bb * nt * di..(bb + 1) * nt * di], (h, nt, di / h))
    }
}

impl Drop for ImageUpdate {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.give(std::mem::take(&mut self.a));
        }
    }
}
