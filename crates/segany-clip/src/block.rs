//! One pre-norm residual block (`ln_1`, `attn`, `ln_2`, `mlp`) and its CLIP Surgery variant.

use candle_core::{Module, Result, Tensor};
use candle_nn::{layer_norm, LayerNorm, VarBuilder};
use segany_core::nn::{linear, Linear};

use crate::activation::Activation;
use crate::attention::{Attention, Mask};

/// `c_fc` → activation → `c_proj`.
#[derive(Debug, Clone)]
pub struct Mlp {
    c_fc: Linear,
    c_proj: Linear,
    act: Activation,
}

impl Mlp {
    /// Reads `c_fc` and `c_proj`.
    pub fn new(width: usize, hidden: usize, act: Activation, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            c_fc: linear(width, hidden, vb.pp("c_fc"))?,
            c_proj: linear(hidden, width, vb.pp("c_proj"))?,
            act,
        })
    }
}

impl Mlp {
    /// The arithmetic of `c_fc` and `c_proj` on the CPU; whether bf16 is on.
    pub fn set_cpu_matmul(&mut self, mode: segany_core::nn::CpuMatmul) -> Result<bool> {
        Ok(self.c_fc.set_cpu_matmul(mode)? & self.c_proj.set_cpu_matmul(mode)?)
    }
    /// `c_fc` with its activation fused into the bias pass on the CPU.
    fn hidden(&self, xs: &Tensor) -> Result<Tensor> {
        match self.act {
            Activation::QuickGelu => self.c_fc.forward_quick_gelu(xs),
            Activation::Gelu => self.c_fc.forward_gelu(xs),
            Activation::GeluTanh => self.act.forward(&self.c_fc.forward(xs)?),
        }
    }

    /// `residual + mlp(xs)`, the sum taken in `c_proj`'s bias pass on the CPU.
    pub fn forward_add(&self, xs: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.c_proj.forward_add(&self.hidden(xs)?, residual)
    }
}

impl Module for Mlp {
    /// `c_fc` with its activation, then `c_proj`.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.c_proj.forward(&self.hidden(xs)?)
    }
}

/// `ResidualAttentionBlock`: `x + attn(ln_1 x)`, then `x + mlp(ln_2 x)`.
#[derive(Debug, Clone)]
pub struct ResidualAttentionBlock {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

/// The two residual streams of CLIP Surgery's last blocks.
#[derive(Debug, Clone)]
pub struct DualStream {
    /// The v-v path (no MLP).
    pub new: Tensor,
    /// The original path (identical to vanilla CLIP).
    pub ori: Tensor,
}

impl ResidualAttentionBlock {
    /// Reads `ln_1`, `attn`, `ln_2`, `mlp`.
    pub fn new(
        width: usize,
        heads: usize,
        mlp_dim: usize,
        act: Activation,
        eps: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            ln_1: layer_norm(width, eps, vb.pp("ln_1"))?,
            attn: Attention::new(width, heads, vb.pp("attn"))?,
            ln_2: layer_norm(width, eps, vb.pp("ln_2"))?,
            mlp: Mlp::new(width, mlp_dim, act, vb.pp("mlp"))?,
        })
    }

    /// The arithmetic of the block's four products on the CPU; whether bf16 is on.
    pub fn set_cpu_matmul(&mut self, mode: segany_core::nn::CpuMatmul) -> Result<bool> {
        Ok(self.attn.set_cpu_matmul(mode)? & self.mlp.set_cpu_matmul(mode)?)
    }
    /// Vanilla block on `[B, N, W]` with the given attention mask (each residual sum taken
    /// in the bias pass of the projection before it).
    pub fn forward(&self, x: &Tensor, mask: Mask) -> Result<Tensor> {
        let x = self.attn.forward_add(&self.ln_1.forward(x)?, mask, x)?;
        self.mlp.forward_add(&self.ln_2.forward(&x)?, &x)
    }

    /// CLIP Surgery block, wired as the official `ResidualAttentionBlock.forward`: attention
    /// reads `ln_1(x_ori)`; the original path adds attention and MLP; the new path adds only the
    /// v-v attention. The first surgery block starts both streams from the same `x`.
    pub fn forward_surgery(&self, x: &DualStream) -> Result<DualStream> {
        let (vv, ori) = self.attn.forward_surgery(&self.ln_1.forward(&x.ori)?)?;
        let x_ori = (&x.ori + ori)?;
        let x_ori = (&x_ori + self.mlp.forward(&self.ln_2.forward(&x_ori)?)?)?;
        let x_new = (&x.new + vv)?;
        Ok(DualStream {
            new: x_new,
            ori: x_ori,
        })
    }
}
