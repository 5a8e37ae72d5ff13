//! The stack of residual blocks (`transformer.resblocks.N`).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::activation::Activation;
use crate::attention::Mask;
use crate::block::{DualStream, ResidualAttentionBlock};

/// `Transformer`: `resblocks.0 .. resblocks.{layers-1}`.
#[derive(Debug, Clone)]
pub struct Transformer {
    resblocks: Vec<ResidualAttentionBlock>,
}

impl Transformer {
    /// Reads `resblocks.{i}` for `i < layers`.
    pub fn new(
        width: usize,
        layers: usize,
        heads: usize,
        mlp_dim: usize,
        act: Activation,
        eps: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        let vb = vb.pp("resblocks");
        let resblocks = (0..layers)
            .map(|i| ResidualAttentionBlock::new(width, heads, mlp_dim, act, eps, vb.pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { resblocks })
    }

    /// The arithmetic of every block's products on the CPU; whether bf16 is on.
    pub fn set_cpu_matmul(&mut self, mode: segany_core::nn::CpuMatmul) -> Result<bool> {
        let mut on = !self.resblocks.is_empty();
        for b in &mut self.resblocks {
            on &= b.set_cpu_matmul(mode)?;
        }
        Ok(on)
    }
    /// Number of blocks.
    pub fn layers(&self) -> usize {
        self.resblocks.len()
    }

    /// Runs every block on `[B, N, W]` with the given attention mask.
    pub fn forward(&self, x: &Tensor, mask: Mask) -> Result<Tensor> {
        let mut x = x.clone();
        for b in &self.resblocks {
            x = b.forward(&x, mask)?;
        }
        Ok(x)
    }

    /// CLIP Surgery: vanilla blocks first, the dual-path blocks for the last `depth` ones
    /// (clamped to the number of blocks). Returns both streams.
    pub fn forward_surgery(&self, x: &Tensor, depth: usize) -> Result<DualStream> {
        let split = self.resblocks.len() - depth.min(self.resblocks.len());
        let mut x = x.clone();
        for b in &self.resblocks[..split] {
            x = b.forward(&x, Mask::None)?;
        }
        let mut s = DualStream {
            new: x.clone(),
            ori: x,
        };
        for b in &self.resblocks[split..] {
            s = b.forward_surgery(&s)?;
        }
        Ok(s)
    }
}
