//! A ViT block with windowed or global attention.

use crate::attention::Attention;
use crate::ImageEncoderConfig;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::{
    is_cpu_f32, layer_norm, linear, zeroed_output, Activation, CpuMatmul, LayerNorm, Linear,
};

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

    /// Whether [`Block::forward_buffers`] can run this block: its layers are f32 CPU layers.
    pub(crate) fn buffers_supported(&self) -> bool {
        [&self.lin1, &self.lin2]
            .iter()
            .all(|l| l.weight_t().is_some() && l.bias().is_none_or(is_cpu_f32))
            && self.attn.buffers_supported()
            && [&self.norm1, &self.norm2]
                .iter()
                .all(|n| is_cpu_f32(n.weight()) && is_cpu_f32(n.bias()))
    }

    /// The block on the CPU in f32 through reused buffers: `buf.x` holds the `(B·h·w, C)`
    /// tokens of `B` `h × w` grids before and after; the values are [`Module::forward`]'s.
    pub(crate) fn forward_buffers(
        &self,
        buf: &mut Buffers,
        grid: (usize, usize, usize),
    ) -> Result<()> {
        let rows = grid.0 * grid.1 * grid.2;
        self.norm1.forward_into(&buf.x, &mut buf.y)?;
        self.attn.forward_grid_add_into(
            &mut buf.y,
            grid,
            self.window_size,
            &buf.x,
            &mut buf.wide,
            &mut buf.tmp,
        )?;
        std::mem::swap(&mut buf.x, &mut buf.tmp);
        self.norm2.forward_into(&buf.x, &mut buf.y)?;
        let hidden = buf
            .wide
            .get_mut(..rows * self.lin1.weight().dim(0)?)
            .ok_or_else(|| candle_core::Error::msg("block: MLP scratch too small"))?;
        self.lin1
            .forward_into(&buf.y, rows, Activation::GeluErf, None, hidden)?;
        self.lin2.forward_into(
            hidden,
            rows,
            Activation::Identity,
            Some(&buf.x),
            &mut buf.tmp,
        )?;
        std::mem::swap(&mut buf.x, &mut buf.tmp);
        Ok(())
    }
}

/// The buffers every block of an encoder pass reuses on the CPU: a block's output of tens
/// of megabytes, made fresh, costs a page fault and the kernel's zeroing for every page
/// (≈ 5% of SAM ViT-B's encoder on 2 Zen 4 cores). Made once per pass.
pub(crate) struct Buffers {
    /// The tokens, `(B·h·w, C)`.
    pub(crate) x: Vec<f32>,
    /// The next tokens, swapped with `x` after each residual sum.
    tmp: Vec<f32>,
    /// A norm's output, then the attention's output.
    y: Vec<f32>,
    /// The `qkv` projection, then the MLP's hidden activations.
    wide: Vec<f32>,
}

impl Buffers {
    /// Buffers for `x`'s `rows × dim` tokens and MLPs `mlp_dim` wide.
    pub(crate) fn new(x: Vec<f32>, dim: usize, mlp_dim: usize) -> Self {
        let rows = x.len() / dim.max(1);
        Self {
            tmp: zeroed_output(x.len()),
            y: zeroed_output(x.len()),
            wide: zeroed_output(rows * mlp_dim.max(3 * dim)),
            x,
        }
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
