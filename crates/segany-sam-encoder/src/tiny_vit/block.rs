//! The TinyViT block: window attention, depthwise local convolution, MLP.

use super::attention::TinyAttention;
use super::conv_bn::{Conv2dBN, ConvBnSpec};
use super::gelu::gelu;
use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use segany_core::nn::{layer_norm, LayerNorm};

/// TinyViT's `Mlp` (`mlp.norm`, `mlp.fc1`, `mlp.fc2`): LayerNorm, linear, exact GELU, linear.
#[derive(Debug, Clone)]
pub struct TinyMlp {
    norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl TinyMlp {
    /// Loads the MLP of `dim`-wide tokens with a `hidden`-wide middle layer.
    pub fn new(dim: usize, hidden: usize, ln_eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm: layer_norm(dim, ln_eps, vb.pp("norm"))?,
            fc1: candle_nn::linear(dim, hidden, vb.pp("fc1"))?,
            fc2: candle_nn::linear(hidden, dim, vb.pp("fc2"))?,
        })
    }
}

impl Module for TinyMlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let c = dims.last().copied().unwrap_or(0);
        // Linear layers on (tokens, C): one large matmul.
        let x = self.norm.forward(x)?.reshape(((), c))?;
        self.fc2
            .forward(&gelu(&self.fc1.forward(&x)?)?)?
            .reshape(dims)
    }
}

/// `TinyViTBlock` on tokens `(B, H·W, C)` of an `H`×`W` grid: `x + attn(windows(x))`, then the
/// depthwise `local_conv` on the grid, then `x + mlp(x)`. Grids that are not a multiple of
/// the window are zero-padded bottom/right before partitioning (the padded tokens take part
/// in attention, as in the reference) and cropped afterwards.
#[derive(Debug, Clone)]
pub struct TinyViTBlock {
    attn: TinyAttention,
    local_conv: Conv2dBN,
    mlp: TinyMlp,
    window: usize,
}

/// Hyper-parameters of one [`TinyViTBlock`].
#[derive(Debug, Clone, Copy)]
pub struct TinyBlockSpec {
    /// Token width.
    pub dim: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Window side.
    pub window: usize,
    /// MLP hidden width.
    pub mlp_hidden: usize,
    /// Kernel side of the local convolution.
    pub local_conv_size: usize,
    /// LayerNorm epsilon.
    pub ln_eps: f64,
    /// BatchNorm epsilon.
    pub bn_eps: f64,
}

impl TinyViTBlock {
    /// Loads the block (`attn.*`, `local_conv.*`, `mlp.*`).
    pub fn new(spec: TinyBlockSpec, vb: VarBuilder) -> Result<Self> {
        let attn = TinyAttention::new(
            spec.dim,
            spec.num_heads,
            spec.window,
            spec.ln_eps,
            vb.pp("attn"),
        )?;
        let local_conv = Conv2dBN::new(
            ConvBnSpec::depthwise(spec.dim, spec.local_conv_size, 1),
            spec.bn_eps,
            vb.pp("local_conv"),
        )?;
        let mlp = TinyMlp::new(spec.dim, spec.mlp_hidden, spec.ln_eps, vb.pp("mlp"))?;
        Ok(Self {
            attn,
            local_conv,
            mlp,
            window: spec.window,
        })
    }

    fn windowed_attention(&self, x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        let (b, l, c) = x.dims3()?;
        let ws = self.window;
        if h == ws && w == ws {
            return self.attn.forward(x);
        }
        let (pad_b, pad_r) = ((ws - h % ws) % ws, (ws - w % ws) % ws);
        let mut g = x.reshape((b, h, w, c))?;
        if pad_b > 0 {
            g = g.pad_with_zeros(1, 0, pad_b)?;
        }
        if pad_r > 0 {
            g = g.pad_with_zeros(2, 0, pad_r)?;
        }
        let (ph, pw) = (h + pad_b, w + pad_r);
        let (nh, nw) = (ph / ws, pw / ws);
        let windows = g
            .reshape((b, nh, ws, nw, ws, c))?
            .transpose(2, 3)?
            .reshape((b * nh * nw, ws * ws, c))?;
        let y = self
            .attn
            .forward(&windows)?
            .reshape((b, nh, nw, ws, ws, c))?
            .transpose(2, 3)?
            .reshape((b, ph, pw, c))?;
        let y = if pad_b > 0 || pad_r > 0 {
            y.narrow(1, 0, h)?.narrow(2, 0, w)?
        } else {
            y
        };
        y.reshape((b, l, c))
    }

    /// `(B, H·W, C)` tokens of an `h`×`w` grid → same shape.
    pub fn forward(&self, x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        let (b, l, c) = x.dims3()?;
        if l != h * w {
            candle_core::bail!("TinyViT block: {l} tokens do not form a {h}×{w} grid");
        }
        let x = (x + self.windowed_attention(x, h, w)?)?;
        let x = x.transpose(1, 2)?.reshape((b, c, h, w))?;
        let x = self
            .local_conv
            .forward(&x)?
            .reshape((b, c, l))?
            .transpose(1, 2)?
            .contiguous()?;
        &x + self.mlp.forward(&x)?
    }
}
