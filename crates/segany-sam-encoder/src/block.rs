//! A ViT block with windowed or global attention.

use crate::attention::Attention;
use crate::ImageEncoderConfig;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::{layer_norm, linear, CpuMatmul, LayerNorm, Linear};

/// `norm1 → attn (windowed if window_size > 0) → residual → norm2 → mlp (lin1, GELU, lin2) → residual`.
#[derive(Debug, Clone)]
pub struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    lin1: Linear,
    lin2: Linear,
    window_size: usize,
}

impl Block {
    /// Loads block `vb` (`image_encoder.blocks.N`) with the given window size (0 = global).
    pub fn new(cfg: &ImageEncoderConfig, window_size: usize, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        let size = if window_size > 0 {
            window_size
        } else {
            cfg.grid_size()
        };
        Ok(Self {
            norm1: layer_norm(dim, eps, vb.pp("norm1"))?,
            attn: Attention::new(
                dim,
                cfg.num_attention_heads,
                cfg.qkv_bias,
                cfg.use_rel_pos,
                2 * size - 1,
                vb.pp("attn"),
            )?,
            norm2: layer_norm(dim, eps, vb.pp("norm2"))?,
            lin1: linear(dim, cfg.mlp_dim(), vb.pp("mlp").pp("lin1"))?,
            lin2: linear(cfg.mlp_dim(), dim, vb.pp("mlp").pp("lin2"))?,
            window_size,
        })
    }

    /// The arithmetic of the block's products on the CPU ([`CpuMatmul`]); whether bf16 is on.
    pub fn set_cpu_matmul(&mut self, mode: CpuMatmul) -> Result<bool> {
        Ok(self.attn.set_cpu_matmul(mode)?
            & self.lin1.set_cpu_matmul(mode)?
            & self.lin2.set_cpu_matmul(mode)?)
    }

    /// Window size (0 for global attention).
    pub fn window_size(&self) -> usize {
        self.window_size
    }
}

impl Module for Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // `x + attn(norm1(x))`, then `x + mlp(norm2(x))`; each residual sum is taken in the
        // bias pass of the projection before it.
        let y = self.norm1.forward(x)?;
        let x = self.attn.forward_grid_add(&y, self.window_size, x)?;
        let m = self.lin1.forward_gelu(&self.norm2.forward(&x)?)?;
        self.lin2.forward_add(&m, &x)
    }
}
