//! One post-norm DETR `TransformerEncoderLayer`: positions added to queries and keys only,
//! ReLU feed-forward, dropout 0.

use crate::attention::MultiheadAttention;
use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use segany_core::nn::{layer_norm, LayerNorm};

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
            linear1: candle_nn::linear(dim, ffn, vb.pp("linear1"))?,
            linear2: candle_nn::linear(ffn, dim, vb.pp("linear2"))?,
            norm1: layer_norm(dim, eps, vb.pp("norm1"))?,
            norm2: layer_norm(dim, eps, vb.pp("norm2"))?,
        })
    }

    /// `src (B, N, D)`, `pos (1 or B, N, D)` → `(B, N, D)` (`forward_post` of DETR).
    pub fn forward(&self, src: &Tensor, pos: &Tensor) -> Result<Tensor> {
        let qk = src.broadcast_add(pos)?;
        let attn = self.self_attn.forward(&qk, &qk, src, None)?;
        let src = self.norm1.forward(&(src + attn)?)?;
        let ff = self.linear2.forward(&self.linear1.forward(&src)?.relu()?)?;
        self.norm2.forward(&(src + ff)?)
    }
}
