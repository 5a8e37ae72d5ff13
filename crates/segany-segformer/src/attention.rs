//! Efficient self-attention: queries over all tokens, keys and values from a sequence
//! spatially reduced by a strided convolution (`attention.self.*`, `attention.output.dense`).

use candle_core::{Module, Result, Tensor};
use candle_nn::{conv2d, linear, Conv2d, Conv2dConfig, Linear, VarBuilder};
use segany_core::nn::{layer_norm, LayerNorm};

/// PyTorch's `nn.LayerNorm` default, used by every SegFormer norm (not `config.layer_norm_eps`).
pub(crate) const TORCH_LN_EPS: f64 = 1e-5;

/// `(B, N, C)` tokens of an `h × w` map to `(B, C, h, w)`.
pub(crate) fn tokens_to_map(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (b, _, c) = x.dims3()?;
    x.transpose(1, 2)?.reshape((b, c, h, w))
}

/// `(B, C, h, w)` to `(B, h·w, C)` tokens.
pub(crate) fn map_to_tokens(x: &Tensor) -> Result<Tensor> {
    x.flatten_from(2)?.transpose(1, 2)?.contiguous()
}

/// Multi-head attention with key/value sequence reduction (`SegformerEfficientSelfAttention`).
#[derive(Debug, Clone)]
pub struct EfficientSelfAttention {
    heads: usize,
    head_dim: usize,
    query: Linear,
    key: Linear,
    value: Linear,
    /// Strided conv and its LayerNorm when the reduction ratio is > 1.
    sr: Option<(Conv2d, LayerNorm)>,
    output: Linear,
}

impl EfficientSelfAttention {
    /// `vb` points at `attention` (holding `self.*` and `output.dense`).
    pub fn new(hidden: usize, heads: usize, sr_ratio: usize, vb: VarBuilder) -> Result<Self> {
        let vs = vb.pp("self");
        let sr = if sr_ratio > 1 {
            let cfg = Conv2dConfig {
                stride: sr_ratio,
                ..Default::default()
            };
            Some((
                conv2d(hidden, hidden, sr_ratio, cfg, vs.pp("sr"))?,
                layer_norm(hidden, TORCH_LN_EPS, vs.pp("layer_norm"))?,
            ))
        } else {
            None
        };
        Ok(Self {
            heads,
            head_dim: hidden / heads,
            query: linear(hidden, hidden, vs.pp("query"))?,
            key: linear(hidden, hidden, vs.pp("key"))?,
            value: linear(hidden, hidden, vs.pp("value"))?,
            sr,
            output: linear(hidden, hidden, vb.pp("output").pp("dense"))?,
        })
    }

    fn split_heads(&self, x: Tensor) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        x.reshape((b, n, self.heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// `x`: `(B, h·w, C)` tokens of an `h × w` map → `(B, h·w, C)`.
    pub fn forward(&self, x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let q = self.split_heads(self.query.forward(x)?)?;
        let kv = match &self.sr {
            Some((conv, norm)) => {
                norm.forward(&map_to_tokens(&conv.forward(&tokens_to_map(x, h, w)?)?)?)?
            }
            None => x.clone(),
        };
        let k = self.split_heads(self.key.forward(&kv)?)?;
        let v = self.split_heads(self.value.forward(&kv)?)?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let att = (q.matmul(&k.t()?)? * scale)?;
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let out = att.matmul(&v)?.transpose(1, 2)?.reshape((b, n, c))?;
        self.output.forward(&out)
    }
}

/// Mix-FFN: `dense1` → 3×3 depth-wise conv → activation → `dense2` (`SegformerMixFFN`).
#[derive(Debug, Clone)]
pub struct MixFfn {
    dense1: Linear,
    dwconv: Conv2d,
    act: candle_nn::Activation,
    dense2: Linear,
}

impl MixFfn {
    /// `vb` points at `mlp`.
    pub fn new(
        hidden: usize,
        inner: usize,
        act: candle_nn::Activation,
        vb: VarBuilder,
    ) -> Result<Self> {
        let cfg = Conv2dConfig {
            padding: 1,
            groups: inner,
            ..Default::default()
        };
        Ok(Self {
            dense1: linear(hidden, inner, vb.pp("dense1"))?,
            dwconv: conv2d(inner, inner, 3, cfg, vb.pp("dwconv").pp("dwconv"))?,
            act,
            dense2: linear(inner, hidden, vb.pp("dense2"))?,
        })
    }

    /// `(B, h·w, C)` → `(B, h·w, C)`.
    pub fn forward(&self, x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        let x = self.dense1.forward(x)?;
        let x = map_to_tokens(&self.dwconv.forward(&tokens_to_map(&x, h, w)?)?)?;
        self.dense2.forward(&x.apply(&self.act)?)
    }
}
