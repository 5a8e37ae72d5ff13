//! `Conv2d_BN`: a bias-free convolution followed by an eval-mode BatchNorm, folded into one
//! convolution with a bias at load time (what the reference's own `Conv2d_BN.fuse` does).

use super::depthwise::{depthwise_conv, Depthwise};
use super::pointwise::{pointwise_conv, Pointwise};
use crate::dense_conv::DenseConv;
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::{is_cpu_f32, with_f32_values};

/// Geometry of a [`Conv2dBN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvBnSpec {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Square kernel side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Channel groups (`in_channels` for a depthwise convolution).
    pub groups: usize,
}

impl ConvBnSpec {
    /// A 1×1 convolution.
    pub fn pointwise(in_channels: usize, out_channels: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel: 1,
            stride: 1,
            padding: 0,
            groups: 1,
        }
    }

    /// A depthwise `kernel`×`kernel` convolution with "same" padding.
    pub fn depthwise(channels: usize, kernel: usize, stride: usize) -> Self {
        Self {
            in_channels: channels,
            out_channels: channels,
            kernel,
            stride,
            padding: kernel / 2,
            groups: channels,
        }
    }
}

/// Convolution + BatchNorm (`c.weight`, `bn.{weight,bias,running_mean,running_var}`) in eval
/// mode: `(conv(x) − mean) / sqrt(var + eps) · γ + β`, computed as one convolution whose
/// weights are scaled by `γ / sqrt(var + eps)` plus a per-channel bias.
#[derive(Debug, Clone)]
pub struct Conv2dBN {
    weight: Tensor,
    bias: Tensor,
    spec: ConvBnSpec,
    /// Host copy of a depthwise layer's folded weights for the CPU kernel.
    depthwise: Option<Depthwise>,
    /// Host copy of a 1×1 layer's folded `(C_out, C_in)` weights and bias for the CPU kernel.
    pointwise: Option<(Vec<f32>, Vec<f32>)>,
    /// Host copy of any other `groups = 1` layer (the stem) for the CPU kernel.
    dense: Option<DenseConv>,
}

impl Conv2dBN {
    /// Loads `c.weight` and the `bn.*` statistics from `vb` and folds them (in f32).
    pub fn new(spec: ConvBnSpec, bn_eps: f64, vb: VarBuilder) -> Result<Self> {
        let ConvBnSpec {
            in_channels,
            out_channels: out,
            kernel: k,
            groups,
            ..
        } = spec;
        if groups == 0 || in_channels % groups != 0 || out % groups != 0 {
            candle_core::bail!(
                "{}: {in_channels} → {out} channels do not split into {groups} groups",
                vb.prefix()
            );
        }
        let w = vb
            .pp("c")
            .get((out, in_channels / groups, k, k), "weight")?;
        let bn = vb.pp("bn");
        let f32 = |t: Tensor| t.to_dtype(DType::F32);
        let gamma = f32(bn.get(out, "weight")?)?;
        let beta = f32(bn.get(out, "bias")?)?;
        let mean = f32(bn.get(out, "running_mean")?)?;
        let var = f32(bn.get(out, "running_var")?)?;
        let scale = gamma.broadcast_div(&(var + bn_eps)?.sqrt()?)?;
        let bias = (beta - mean.mul(&scale)?)?;
        let weight = f32(w.clone())?.broadcast_mul(&scale.reshape((out, 1, 1, 1))?)?;
        let is_depthwise = groups == in_channels && groups == out && k > 1;
        let depthwise = if is_depthwise && w.device().is_cpu() {
            Some(Depthwise {
                weight: weight.flatten_all()?.to_vec1()?,
                bias: bias.to_vec1()?,
                kernel: k,
                stride: spec.stride,
                padding: spec.padding,
            })
        } else {
            None
        };
        let is_pointwise = k == 1 && spec.stride == 1 && spec.padding == 0 && groups == 1;
        let pointwise = if is_pointwise && w.device().is_cpu() {
            Some((weight.flatten_all()?.to_vec1()?, bias.to_vec1()?))
        } else {
            None
        };
        let dense = if groups == 1 && !is_pointwise && w.device().is_cpu() {
            Some(DenseConv::new(
                &weight,
                Some(&bias),
                spec.stride,
                spec.padding,
            )?)
        } else {
            None
        };
        let dtype = w.dtype();
        Ok(Self {
            weight: weight.to_dtype(dtype)?,
            bias: bias.reshape((1, out, 1, 1))?.to_dtype(dtype)?,
            spec,
            depthwise,
            pointwise,
            dense,
        })
    }

    /// The convolution's geometry.
    pub fn spec(&self) -> ConvBnSpec {
        self.spec
    }

    /// The host copy of a 1×1 layer's folded weights `(C_out, C_in)` and bias, when the
    /// layer lives on the CPU.
    pub(crate) fn cpu_pointwise(&self) -> Option<Pointwise<'_>> {
        self.pointwise.as_ref().map(|(w, b)| (&w[..], &b[..]))
    }

    /// The host copy of a depthwise layer, when it lives on the CPU.
    pub(crate) fn cpu_depthwise(&self) -> Option<&Depthwise> {
        self.depthwise.as_ref()
    }
}

impl Conv2dBN {
    /// `gelu(conv(x))` (exact GELU), fused into the convolution's last pass on the CPU for 1×1
    /// and depthwise layers.
    pub fn forward_gelu(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, None, true)
    }

    /// `gelu(conv(x) + residual)`: MBConv's output, in one pass after the product on the CPU
    /// for 1×1 layers.
    pub fn forward_add_gelu(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.forward_with(x, Some(residual), true)
    }

    /// The convolution of channels-last tokens `x (B, H·W, C)` of an `h`×`w` grid (TinyViT's
    /// `local_conv`): `(B, H'·W', C_out)`. Depthwise layers on the CPU in f32 run without
    /// leaving the token layout; otherwise the tokens go to NCHW and back.
    pub fn forward_tokens(&self, x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        let (b, l, c) = x.dims3()?;
        if l != h * w {
            candle_core::bail!("Conv2d_BN: {l} tokens do not form a {h}×{w} grid");
        }
        if let (Some(op), true) = (&self.depthwise, is_cpu_f32(x)) {
            let out = with_f32_values(x, |v| op.forward_tokens(v, (b, h, w, c)))?;
            let n = out.len() / (b * c).max(1);
            return Tensor::from_vec(out, (b, n, c), x.device());
        }
        let y = self.forward(&x.transpose(1, 2)?.reshape((b, c, h, w))?)?;
        let (_, co, oh, ow) = y.dims4()?;
        y.reshape((b, co, oh * ow))?.transpose(1, 2)?.contiguous()
    }

    /// The convolution as candle operations (other devices and dtypes).
    fn composed(&self, x: &Tensor) -> Result<Tensor> {
        let s = self.spec;
        if let Some(op) = &self.depthwise {
            return depthwise_conv(x, op, (&self.weight, &self.bias), false);
        }
        if s.kernel == 1 && s.stride == 1 && s.padding == 0 && s.groups == 1 {
            // A 1×1 convolution is a matmul over channels: (C_out, C_in) · (B, C_in, H·W).
            let (b, c, h, w) = x.dims4()?;
            let wm = self.weight.reshape((s.out_channels, c))?;
            let y = wm
                .broadcast_left(b)?
                .matmul(&x.reshape((b, c, h * w))?.contiguous()?)?;
            return y
                .reshape((b, s.out_channels, h, w))?
                .broadcast_add(&self.bias);
        }
        x.conv2d(&self.weight, s.padding, s.stride, 1, s.groups)?
            .broadcast_add(&self.bias)
    }

    fn forward_with(&self, x: &Tensor, residual: Option<&Tensor>, gelu: bool) -> Result<Tensor> {
        if let (Some((w, b)), true) = (&self.pointwise, is_cpu_f32(x)) {
            if residual.is_none_or(is_cpu_f32) {
                return pointwise_conv(x, (w, b), residual, gelu);
            }
        }
        if let (Some(op), None) = (&self.depthwise, residual) {
            return depthwise_conv(x, op, (&self.weight, &self.bias), gelu);
        }
        if let (Some(conv), None, true) = (&self.dense, residual, is_cpu_f32(x)) {
            return conv.forward(x, gelu);
        }
        let y = self.composed(x)?;
        let y = match residual {
            Some(r) => (y + r)?,
            None => y,
        };
        if gelu {
            super::gelu::gelu(&y)
        } else {
            Ok(y)
        }
    }
}

impl Module for Conv2dBN {
    /// `(B, C_in, H, W)` → `(B, C_out, H', W')`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, None, false)
    }
}
