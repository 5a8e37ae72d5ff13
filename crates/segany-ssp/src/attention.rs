//! PyTorch's `nn.MultiheadAttention` with its packed `in_proj_weight` / `in_proj_bias`, batch
//! first here, with an optional key-padding mask.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};

/// `nn.MultiheadAttention(dim, heads)` (bias on, `kdim = vdim = dim`).
#[derive(Debug, Clone)]
pub struct MultiheadAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl MultiheadAttention {
    /// Loads `in_proj_weight` `[3·dim, dim]`, `in_proj_bias` `[3·dim]` and `out_proj.*`.
    pub fn new(dim: usize, num_heads: usize, vb: VarBuilder) -> Result<Self> {
        if num_heads == 0 || dim % num_heads != 0 {
            candle_core::bail!("attention width {dim} is not divisible by {num_heads} heads");
        }
        let w = vb.get((3 * dim, dim), "in_proj_weight")?;
        let b = vb.get(3 * dim, "in_proj_bias")?;
        let part = |i: usize| -> Result<Linear> {
            Ok(Linear::new(
                w.narrow(0, i * dim, dim)?.contiguous()?,
                Some(b.narrow(0, i * dim, dim)?.contiguous()?),
            ))
        };
        Ok(Self {
            q_proj: part(0)?,
            k_proj: part(1)?,
            v_proj: part(2)?,
            out_proj: candle_nn::linear(dim, dim, vb.pp("out_proj"))?,
            num_heads,
            head_dim: dim / num_heads,
        })
    }

    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        x.reshape((b, n, self.num_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// `query (B, Nq, D)`, `key`/`value (B, Nk, D)` → `(B, Nq, D)`. `key_valid (B, Nk)`, when
    /// given, is non-zero for keys that may be attended to (PyTorch's `~key_padding_mask`);
    /// masked keys get `-inf` before the softmax, as in PyTorch.
    pub fn forward(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        key_valid: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, nq, d) = query.dims3()?;
        let nk = key.dim(1)?;
        // PyTorch scales q before the product (`q_scaled = q * head_dim^-0.5`).
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let q = (self.split_heads(&self.q_proj.forward(query)?)? * scale)?;
        let k = self.split_heads(&self.k_proj.forward(key)?)?;
        let v = self.split_heads(&self.v_proj.forward(value)?)?;
        let mut scores = q.matmul(&k.t()?)?; // (B, H, Nq, Nk)
        if let Some(valid) = key_valid {
            let keep = valid.ne(0f32)?.reshape((b, 1, 1, nk))?;
            let zero = Tensor::zeros((b, 1, 1, nk), scores.dtype(), scores.device())?;
            let neg = Tensor::full(f32::NEG_INFINITY, (b, 1, 1, nk), scores.device())?
                .to_dtype(scores.dtype())?;
            let bias = keep.where_cond(&zero, &neg)?;
            scores = scores.broadcast_add(&bias)?;
        }
        let attn = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, nq, d))?;
        self.out_proj.forward(&out)
    }
}

/// A `(B, N)` mask of valid (non-padding) tokens, 1.0 where `token_ids != 0`, in `dtype`.
pub fn valid_token_mask(token_ids: &Tensor, dtype: DType) -> Result<Tensor> {
    let ids = match token_ids.dtype() {
        DType::U8 | DType::U32 | DType::I64 => token_ids.clone(),
        _ => token_ids.to_dtype(DType::F32)?,
    };
    let zero = Tensor::zeros_like(&ids)?;
    ids.ne(&zero)?.to_dtype(dtype)
}

/// Softmax over the last axis followed by zeroing and renormalising with `mask` (1 = keep),
/// `SSP-SAM`'s `PhraseAttention` weighting.
pub(crate) fn masked_renormalised_softmax(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let a = candle_nn::ops::softmax_last_dim(scores)?;
    let a = (a * mask)?;
    let sum = a.sum_keepdim(D::Minus1)?;
    a.broadcast_div(&sum)
}
