//! The vision tower (`visual.*`): patch embedding, class token, ViT, `ln_post`, `proj`.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{conv2d_no_bias, layer_norm, Conv2d, Conv2dConfig, LayerNorm, VarBuilder};

use crate::attention::Mask;
use crate::config::ClipVisionConfig;
use crate::transformer::Transformer;

/// How the last blocks of the vision tower run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VisionMode {
    /// Vanilla CLIP.
    #[default]
    Plain,
    /// CLIP Surgery: the last `depth` blocks also run the v-v attention path; the tokens come
    /// from that path, the class token from the original one. The CS-ViT models use 6.
    Surgery {
        /// Number of dual-path blocks at the end of the tower.
        depth: usize,
    },
}

impl VisionMode {
    /// The setting of SSP-SAM's `CS-ViT-*` models (last 6 blocks).
    pub const CS_VIT: VisionMode = VisionMode::Surgery { depth: 6 };
}

/// `VisionTransformer`.
#[derive(Debug, Clone)]
pub struct VisionTransformer {
    conv1: Conv2d,
    class_embedding: Tensor,
    positional_embedding: Tensor,
    ln_pre: LayerNorm,
    transformer: Transformer,
    ln_post: LayerNorm,
    proj: Tensor,
    cfg: ClipVisionConfig,
}

impl VisionTransformer {
    /// Reads `conv1`, `class_embedding`, `positional_embedding`, `ln_pre`, `transformer`,
    /// `ln_post` and `proj` (`[width, embed_dim]`) under `vb` (usually `visual`).
    pub fn new(cfg: &ClipVisionConfig, embed_dim: usize, vb: VarBuilder) -> Result<Self> {
        let w = cfg.width;
        let conv_cfg = Conv2dConfig {
            stride: cfg.patch_size,
            ..Default::default()
        };
        Ok(Self {
            conv1: conv2d_no_bias(3, w, cfg.patch_size, conv_cfg, vb.pp("conv1"))?,
            class_embedding: vb.get(w, "class_embedding")?,
            positional_embedding: vb.get((cfg.num_tokens(), w), "positional_embedding")?,
            ln_pre: layer_norm(w, cfg.layer_norm_eps, vb.pp("ln_pre"))?,
            transformer: Transformer::new(
                w,
                cfg.layers,
                cfg.heads,
                cfg.mlp_dim,
                cfg.activation,
                cfg.layer_norm_eps,
                vb.pp("transformer"),
            )?,
            ln_post: layer_norm(w, cfg.layer_norm_eps, vb.pp("ln_post"))?,
            proj: vb.get((w, embed_dim), "proj")?,
            cfg: cfg.clone(),
        })
    }

    /// The arithmetic of the transformer's linear layers on the CPU in f32 (see
    /// [`segany_core::nn::CpuMatmul`]); returns whether they now multiply in bf16 (`false` on CPUs without
    /// AVX-512 BF16 and for weights off the CPU or not in f32).
    pub fn set_cpu_matmul(&mut self, mode: segany_core::nn::CpuMatmul) -> Result<bool> {
        self.transformer.set_cpu_matmul(mode)
    }
    /// The configuration the tower was built with.
    pub fn config(&self) -> &ClipVisionConfig {
        &self.cfg
    }

    /// Token embeddings after `ln_pre`: `[B, 1+N, W]`.
    fn embed(&self, px: &Tensor) -> Result<Tensor> {
        let x = self.conv1.forward(px)?; // [B, W, g, g]
        let (b, w, _, _) = x.dims4()?;
        let x = x.flatten_from(2)?.transpose(1, 2)?; // [B, N, W]
        let cls = self.class_embedding.reshape((1, 1, w))?.repeat((b, 1, 1))?;
        let x = Tensor::cat(&[&cls.to_dtype(x.dtype())?, &x], 1)?;
        let x = x.broadcast_add(&self.positional_embedding)?;
        self.ln_pre.forward(&x)
    }

    /// `ln_post` then `@ proj` on `[B, T, W]`.
    fn head(&self, x: &Tensor) -> Result<Tensor> {
        self.ln_post.forward(x)?.broadcast_matmul(&self.proj)
    }

    /// All tokens after `ln_post` and `proj`: `[B, 1+N, D]` (dense patch features; token 0 is
    /// the image embedding).
    pub fn forward_tokens(&self, px: &Tensor, mode: VisionMode) -> Result<Tensor> {
        let x = self.embed(px)?;
        let x = match mode {
            VisionMode::Plain => self.transformer.forward(&x, Mask::None)?,
            VisionMode::Surgery { depth } => {
                let s = self.transformer.forward_surgery(&x, depth)?;
                let n = s.new.dim(1)?;
                Tensor::cat(&[s.ori.narrow(1, 0, 1)?, s.new.narrow(1, 1, n - 1)?], 1)?
            }
        };
        self.head(&x)
    }
}

impl Module for VisionTransformer {
    /// Pooled, projected image embedding `[B, D]` (not normalised).
    fn forward(&self, px: &Tensor) -> Result<Tensor> {
        let x = self.transformer.forward(&self.embed(px)?, Mask::None)?;
        let cls = x.narrow(1, 0, 1)?;
        self.head(&cls)?.squeeze(D::Minus2)
    }
}
