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
        if num_heads == 0 || internal % num_heads != 0 {
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

    fn separate_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        x.reshape((b, n, self.num_heads, c / self.num_heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Attends queries `q (B, Nq, D)` to keys `k (B, Nk, D)` with values `v (B, Nk, D)`.
    pub fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let q = self.separate_heads(&self.q_proj.forward(q)?)?;
        let k = self.separate_heads(&self.k_proj.forward(k)?)?;
        let v = self.separate_heads(&self.v_proj.forward(v)?)?;
        let (b, h, n, c) = q.dims4()?;
        let attn = (q.matmul(&k.t()?)? / (c as f64).sqrt())?;
        let attn = candle_nn::ops::softmax_last_dim(&attn)?;
        let out = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, h * c))?;
        self.out_proj.forward(&out)
    }
}
