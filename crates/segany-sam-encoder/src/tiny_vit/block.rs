//! The TinyViT block: window attention, depthwise local convolution, MLP.

use super::attention::TinyAttention;
use super::conv_bn::{Conv2dBN, ConvBnSpec};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::{layer_norm, linear, LayerNorm, Linear};

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
            fc1: linear(dim, hidden, vb.pp("fc1"))?,
            fc2: linear(hidden, dim, vb.pp("fc2"))?,
        })
    }
}

impl TinyMlp {
    /// `x + mlp(x)`: the block's second residual, added in `fc2`'s bias pass on the CPU (the
    /// same values), GELU in `fc1`'s.
    pub fn forward_add(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward_gelu(&self.norm.forward(x)?)?;
        self.fc2.forward_add(&h, x)
    }
}

impl Module for TinyMlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2
            .forward(&self.fc1.forward_gelu(&self.norm.forward(x)?)?)
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
        let l = x.dim(1)?;
        if l != h * w {
            candle_core::bail!("TinyViT block: {l} tokens do not form a {h}×{w} grid");
        }
        let x = match self.attn.forward_grid_add(x, h, w)? {
            Some(y) => y,
            None => (x + self.windowed_attention(x, h, w)?)?,
        };
        let x = self.local_conv.forward_tokens(&x, h, w)?;
        self.mlp.forward_add(&x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny_vit::test_util::{build_as, random_tensors};
    use candle_core::{DType, Device};

    /// The CPU kernels (window attention with the padding rows from `LayerNorm(0)`, core
    /// `Linear` with GELU and residual passes, the depthwise kernel) against the composition
    /// of the reference's steps, which the same block takes in f64: grids that need padding on
    /// both sides, one that does not, and a single window.
    #[test]
    fn cpu_kernels_match_the_composition() -> Result<()> {
        let spec = TinyBlockSpec {
            dim: 24,
            num_heads: 3,
            window: 4,
            mlp_hidden: 48,
            local_conv_size: 3,
            ln_eps: 1e-5,
            bn_eps: 1e-5,
        };
        let build = |vb: VarBuilder| TinyViTBlock::new(spec, vb);
        let tensors = random_tensors(build);
        let fast = build_as(&tensors, DType::F32, build)?;
        let reference = build_as(&tensors, DType::F64, build)?;
        for (h, w) in [(9, 11), (8, 8), (4, 4), (5, 3)] {
            let x = Tensor::randn(0f32, 1.0, (2, h * w, spec.dim), &Device::Cpu)?;
            let got = fast.forward(&x, h, w)?;
            let want = reference.forward(&x.to_dtype(DType::F64)?, h, w)?;
            let d: f64 = (got.to_dtype(DType::F64)? - &want)?
                .abs()?
                .max_all()?
                .to_scalar()?;
            let scale: f64 = want.abs()?.max_all()?.to_scalar()?;
            assert!(d < 1e-5 * scale.max(1.0), "{h}×{w}: max |Δ| {d:e}");
        }
        Ok(())
    }
}
