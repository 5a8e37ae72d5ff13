//! One post-norm DETR `TransformerEncoderLayer`: positions added to queries and keys only,
//! ReLU feed-forward, dropout 0.

use crate::attention::MultiheadAttention;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::{layer_norm, linear, CpuMatmul, LayerNorm, Linear};

/// `vl_transformer.encoder.layers.N`.
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    self_attn: MultiheadAttention,
    linear1: Linear,
    linear2: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
}

impl EncoderLayer {
    /// Loads `self_attn.*`, `linear1.*`, `linear2.*`, `norm1.*`, `norm2.*`.
    pub fn new(dim: usize, heads: usize, ffn: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            self_attn: MultiheadAttention::new(dim, heads, vb.pp("self_attn"))?,
            linear1: linear(dim, ffn, vb.pp("linear1"))?,
            linear2: linear(ffn, dim, vb.pp("linear2"))?,
            norm1: layer_norm(dim, eps, vb.pp("norm1"))?,
            norm2: layer_norm(dim, eps, vb.pp("norm2"))?,
        })
    }

    /// The arithmetic of the layer's products on the CPU ([`CpuMatmul`]); whether bf16 is on.
    pub fn set_cpu_matmul(&mut self, mode: CpuMatmul) -> Result<bool> {
        Ok(self.self_attn.set_cpu_matmul(mode)?
            & self.linear1.set_cpu_matmul(mode)?
            & self.linear2.set_cpu_matmul(mode)?)
    }

    /// `src (B, N, D)`, `pos (1 or B, N, D)` → `(B, N, D)` (`forward_post` of DETR).
    pub fn forward(&self, src: &Tensor, pos: &Tensor) -> Result<Tensor> {
        self.forward_first(src, pos, None)
    }

    /// The outputs of the first `rows` tokens only (all when `None`), `(B, rows, D)`: every
    /// token still serves as a key and value, but the other rows' attention and feed-forward
    /// are skipped (the last layer, whose later rows nobody reads). Row for row the same as
    /// [`EncoderLayer::forward`].
    pub fn forward_first(&self, src: &Tensor, pos: &Tensor, rows: Option<usize>) -> Result<Tensor> {
        self.forward_first_terms(src, &self.position_terms(pos)?, rows)
    }

    /// The terms fixed positions `pos (1 or B, N, D)` add to this layer's query and key
    /// projections ([`MultiheadAttention::position_terms`]), for
    /// [`EncoderLayer::forward_first_terms`].
    pub fn position_terms(&self, pos: &Tensor) -> Result<Tensor> {
        self.self_attn.position_terms(pos)
    }

    /// [`EncoderLayer::forward_first`] given [`EncoderLayer::position_terms`] (computed once
    /// for a learned position embedding).
    pub fn forward_first_terms(
        &self,
        src: &Tensor,
        terms: &Tensor,
        rows: Option<usize>,
    ) -> Result<Tensor> {
        let x = self
            .norm1
            .forward(&self.self_attn.self_attention_add_terms(src, terms, rows)?)?;
        let ff = self.linear1.forward_relu(&x)?;
        self.norm2.forward(&self.linear2.forward_add(&ff, &x)?)
    }
}
