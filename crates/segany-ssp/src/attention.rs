//! PyTorch's `nn.MultiheadAttention` with its packed `in_proj_weight` / `in_proj_bias`, batch
//! first here, with an optional key-padding mask, and the self-attention of a DETR encoder
//! layer (queries and keys from `src + pos`, values from `src`).

use crate::key_subset::attend_valid_keys;
use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use segany_core::nn::fused_attention::{fused_attention, fused_attention_first, Geometry};
use segany_core::nn::{is_cpu_f32, linear, CpuMatmul, Linear};

/// `nn.MultiheadAttention(dim, heads)` (bias on, `kdim = vdim = dim`).
#[derive(Debug, Clone)]
pub struct MultiheadAttention {
    /// The packed `(3·dim, dim)` projection; queries, keys and values are its three output
    /// ranges.
    in_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl MultiheadAttention {
    /// Loads `in_proj_weight` `[3·dim, dim]`, `in_proj_bias` `[3·dim]` and `out_proj.*`.
    pub fn new(dim: usize, num_heads: usize, vb: VarBuilder) -> Result<Self> {
        if num_heads == 0 || !dim.is_multiple_of(num_heads) {
            candle_core::bail!("attention width {dim} is not divisible by {num_heads} heads");
        }
        let w = vb.get((3 * dim, dim), "in_proj_weight")?;
        let b = vb.get(3 * dim, "in_proj_bias")?;
        Ok(Self {
            in_proj: Linear::new(w, Some(b)),
            out_proj: linear(dim, dim, vb.pp("out_proj"))?,
            num_heads,
            head_dim: dim / num_heads,
        })
    }

    /// The arithmetic of the projections on the CPU ([`CpuMatmul`]): `in_proj` packed whole
    /// and as the query, key, value and query-and-key ranges the forward passes read.
    /// Whether bf16 is on.
    pub fn set_cpu_matmul(&mut self, mode: CpuMatmul) -> Result<bool> {
        let d = self.dim();
        let ranges = [0..d, d..2 * d, 2 * d..3 * d, 0..2 * d];
        Ok(self.in_proj.set_cpu_matmul_with_outputs(mode, &ranges)?
            & self.out_proj.set_cpu_matmul(mode)?)
    }

    fn dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        x.reshape((b, n, self.num_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// `query (B, Nq, D)`, `key`/`value (B, Nk, D)` → `(B, Nq, D)`. `key_valid (B, Nk)`, when
    /// given, is non-zero for keys that may be attended to (PyTorch's `~key_padding_mask`);
    /// masked keys get `-inf` before the softmax, as in PyTorch. On the CPU in f32 the masked
    /// keys are left out instead (the same weights, see `key_subset`).
    pub fn forward(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        key_valid: Option<&Tensor>,
    ) -> Result<Tensor> {
        let d = self.dim();
        let q = self.in_proj.forward_outputs(query, 0, d)?;
        let k = self.in_proj.forward_outputs(key, d, d)?;
        let v = self.in_proj.forward_outputs(value, 2 * d, d)?;
        let out = if is_cpu_f32(query) {
            attend_valid_keys(&q, &k, &v, key_valid, self.num_heads)?
        } else {
            self.attend(&q, &k, &v, key_valid)?
        };
        self.out_proj.forward(&out)
    }

    /// Attention of projected `q (B, Nq, D)`, `k`, `v (B, Nk, D)`, heads merged back.
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        key_valid: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, nq, d) = q.dims3()?;
        let nk = k.dim(1)?;
        // PyTorch scales q before the product (`q_scaled = q * head_dim^-0.5`).
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let q = (self.split_heads(q)? * scale)?;
        let k = self.split_heads(k)?;
        let v = self.split_heads(v)?;
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
        attn.matmul(&v)?.transpose(1, 2)?.reshape((b, nq, d))
    }

    /// `src + attention(q = k = src + pos, v = src)` for the first `rows` tokens (all when
    /// `None`): DETR's encoder self-attention with its residual, `(B, rows, D)`. Every token
    /// is a key; only the returned rows are queries. The same as
    /// [`MultiheadAttention::self_attention_add_terms`] with
    /// [`MultiheadAttention::position_terms`]`(pos)`.
    pub fn self_attention_add(
        &self,
        src: &Tensor,
        pos: &Tensor,
        rows: Option<usize>,
    ) -> Result<Tensor> {
        self.self_attention_add_terms(src, &self.position_terms(pos)?, rows)
    }

    /// What the positions add to the packed projection of `src + pos`: `pos·W_qᵀ`, `pos·W_kᵀ`
    /// and zeros for the values, `(1 or B, N, 3·D)` for `pos (1 or B, N, D)`. Fixed positions
    /// (a learned embedding) give fixed terms: compute them once.
    pub fn position_terms(&self, pos: &Tensor) -> Result<Tensor> {
        let d = self.dim();
        let (bp, n, _) = pos.dims3()?;
        let w_qk = self.in_proj.weight().narrow(0, 0, 2 * d)?;
        let qk = pos
            .reshape((bp * n, d))?
            .matmul(&w_qk.t()?)?
            .reshape((bp, n, 2 * d))?;
        let zeros = Tensor::zeros((bp, n, d), qk.dtype(), qk.device())?;
        Tensor::cat(&[&qk, &zeros], D::Minus1)?.contiguous()
    }

    /// [`MultiheadAttention::self_attention_add`] given the positions'
    /// [`MultiheadAttention::position_terms`]: queries, keys and values come from one product,
    /// `in_proj(src) + terms` (`(src + pos)·W_qkᵀ = src·W_qkᵀ + pos·W_qkᵀ`, equal up to f32
    /// rounding), the terms added in the product's bias pass. On the CPU in f32 the attention
    /// runs fused ([`fused_attention`]: no `(B, H, N, N)` scores) and the residual is added
    /// in `out_proj`'s bias pass.
    pub fn self_attention_add_terms(
        &self,
        src: &Tensor,
        terms: &Tensor,
        rows: Option<usize>,
    ) -> Result<Tensor> {
        let d = self.dim();
        let (b, n, _) = src.dims3()?;
        let rows = rows.unwrap_or(n).min(n);
        let terms = terms.broadcast_as((b, n, 3 * d))?.contiguous()?;
        let qkv = self.in_proj.forward_add(src, &terms)?;
        let residual = src.narrow(1, 0, rows)?;
        if is_cpu_f32(src) {
            let g = Geometry {
                batch: b,
                height: 1,
                width: n,
                window: 0,
                heads: self.num_heads,
                head_dim: self.head_dim,
                causal: false,
            };
            let scale = (self.head_dim as f32).powf(-0.5);
            let out = if rows == n {
                fused_attention(&qkv, None, None, g, scale)?.reshape((b, n, d))?
            } else {
                fused_attention_first(&qkv, None, g, scale, rows)?
            };
            return self.out_proj.forward_add(&out, &residual);
        }
        let q = qkv.narrow(D::Minus1, 0, d)?.narrow(1, 0, rows)?;
        let k = qkv.narrow(D::Minus1, d, d)?;
        let v = qkv.narrow(D::Minus1, 2 * d, d)?;
        let out = self.attend(&q, &k, &v, None)?;
        residual + self.out_proj.forward(&out)?
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
