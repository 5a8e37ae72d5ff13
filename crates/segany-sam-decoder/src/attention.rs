//! Attention of the two-way transformer, with optional down-projection of q/k/v.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::{linear, Linear};

/// `q_proj`, `k_proj`, `v_proj` to `dim / downsample_rate`, multi-head softmax attention,
/// `out_proj` back to `dim`.
#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
}

impl Attention {
    /// Loads the layer.
    pub fn new(
        dim: usize,
        num_heads: usize,
        downsample_rate: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let internal = dim / downsample_rate.max(1);
        if num_heads == 0 || !internal.is_multiple_of(num_heads) {
            candle_core::bail!(
                "{}: {num_heads} heads do not divide width {internal}",
                vb.prefix()
            );
        }
        Ok(Self {
            q_proj: linear(dim, internal, vb.pp("q_proj"))?,
            k_proj: linear(dim, internal, vb.pp("k_proj"))?,
            v_proj: linear(dim, internal, vb.pp("v_proj"))?,
            out_proj: linear(internal, dim, vb.pp("out_proj"))?,
            num_heads,
        })
    }

    /// Number of heads.
    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// `q_proj`.
    pub fn q_proj(&self) -> &Linear {
        &self.q_proj
    }

    /// `k_proj`.
    pub fn k_proj(&self) -> &Linear {
        &self.k_proj
    }

    /// `v_proj`.
    pub fn v_proj(&self) -> &Linear {
        &self.v_proj
    }

    /// `out_proj`.
    pub fn out_proj(&self) -> &Linear {
        &self.out_proj
    }

    fn separate_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        x.reshape((b, n, self.num_heads, c / self.num_heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// `q_proj` split into heads: `(B, N, D)` → `(B, heads, N, c)`.
    pub fn project_queries(&self, q: &Tensor) -> Result<Tensor> {
        self.separate_heads(&self.q_proj.forward(q)?)
    }

    /// `k_proj` split into heads: `(B, N, D)` → `(B, heads, N, c)`.
    pub fn project_keys(&self, k: &Tensor) -> Result<Tensor> {
        self.separate_heads(&self.k_proj.forward(k)?)
    }

    /// `v_proj` split into heads: `(B, N, D)` → `(B, heads, N, c)`.
    pub fn project_values(&self, v: &Tensor) -> Result<Tensor> {
        self.separate_heads(&self.v_proj.forward(v)?)
    }

    /// Attends queries `q (B, Nq, D)` to keys `k (B, Nk, D)` with values `v (B, Nk, D)`.
    ///
    /// Either side may have batch 1 while the other has batch B (an image shared by B prompts):
    /// its projection then runs once (see [`Attention::attend`]).
    pub fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        self.attend(
            &self.project_queries(q)?,
            &self.project_keys(k)?,
            &self.project_values(v)?,
        )
    }

    /// Softmax attention of projected heads and `out_proj`: `q (Bq, h, Nq, c)`,
    /// `k`, `v (Bk, h, Nk, c)` → `(B, Nq, D)`.
    ///
    /// `Bq = Bk`, or one of them is 1 (shared by the batch). Shared keys and values: the
    /// B·Nq queries attend as one batch. Shared queries: one product with every prompt's keys,
    /// a softmax per prompt.
    pub fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let (bq, h, nq, c) = q.dims4()?;
        let (bk, _, nk, _) = k.dims4()?;
        let scale = (c as f64).sqrt();
        let out = if bq == bk {
            let attn = candle_nn::ops::softmax_last_dim(&(q.matmul(&k.t()?)? / scale)?)?;
            attn.matmul(v)?.transpose(1, 2)?
        } else if bk == 1 {
            // (B, h, Nq, c) -> (1, h, B·Nq, c): every prompt's queries against the one image.
            let q = q
                .transpose(0, 1)?
                .contiguous()?
                .reshape((1, h, bq * nq, c))?;
            let attn = candle_nn::ops::softmax_last_dim(&(q.matmul(&k.t()?)? / scale)?)?;
            attn.matmul(v)?
                .reshape((h, bq, nq, c))?
                .permute((1, 2, 0, 3))?
        } else if bq == 1 {
            // Every prompt's keys side by side: (h, c, B·Nk).
            let keys = k
                .permute((1, 3, 0, 2))?
                .contiguous()?
                .reshape((h, c, bk * nk))?;
            let attn = (q.squeeze(0)?.matmul(&keys)? / scale)?; // (h, Nq, B·Nk)
            let attn = candle_nn::ops::softmax_last_dim(&attn.reshape((h, nq, bk, nk))?)?;
            let attn = attn.permute((2, 0, 1, 3))?.contiguous()?; // (B, h, Nq, Nk)
            attn.matmul(v)?.transpose(1, 2)?
        } else {
            candle_core::bail!("attention: query batch {bq} and key batch {bk} do not broadcast")
        };
        let b = bq.max(bk);
        self.out_proj.forward(&out.reshape((b, nq, h * c))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{pseudo_random, randomise};
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    /// A batch-1 side (an image shared by several prompts) gives what broadcasting it first
    /// gives, on both sides.
    #[test]
    fn shared_side_equals_broadcast() -> Result<()> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        Attention::new(16, 2, 2, vb.clone())?;
        randomise(&varmap, 0.5)?;
        // Built after the weights are set: `Linear` copies its weight at build time.
        let attn = Attention::new(16, 2, 2, vb)?;
        let tokens = pseudo_random(&[3, 5, 16], 1, 1.0)?;
        let image = pseudo_random(&[1, 12, 16], 2, 1.0)?;
        let wide = image.broadcast_as((3, 12, 16))?.contiguous()?;
        let max = |a: Tensor, b: Tensor| -> Result<f32> {
            assert_eq!(a.dims(), b.dims());
            (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
        };
        let d = max(
            attn.forward(&tokens, &image, &image)?,
            attn.forward(&tokens, &wide, &wide)?,
        )?;
        assert!(d < 1e-5, "shared keys: {d}");
        let d = max(
            attn.forward(&image, &tokens, &tokens)?,
            attn.forward(&wide, &tokens, &tokens)?,
        )?;
        assert!(d < 1e-5, "shared queries: {d}");
        Ok(())
    }
}
