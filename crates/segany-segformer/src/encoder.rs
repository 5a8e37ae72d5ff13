//! The Mix Transformer encoder (`segformer.encoder.*`): per stage an overlapping patch
//! embedding, transformer layers and a final LayerNorm, giving four feature maps at strides
//! 4, 8, 16 and 32.

use crate::attention::{
    map_to_tokens, tokens_to_map, EfficientSelfAttention, MixFfn, TORCH_LN_EPS,
};
use crate::Config;
use candle_core::{Module, Result, Tensor};
use candle_nn::{conv2d, Conv2d, Conv2dConfig, VarBuilder};
use segany_core::nn::{layer_norm, LayerNorm};

/// Strided convolution with `patch / 2` padding, then LayerNorm over channels
/// (`patch_embeddings.{i}`).
#[derive(Debug, Clone)]
struct OverlapPatchEmbeddings {
    proj: Conv2d,
    norm: LayerNorm,
}

impl OverlapPatchEmbeddings {
    fn new(patch: usize, stride: usize, cin: usize, cout: usize, vb: VarBuilder) -> Result<Self> {
        let cfg = Conv2dConfig {
            stride,
            padding: patch / 2,
            ..Default::default()
        };
        Ok(Self {
            proj: conv2d(cin, cout, patch, cfg, vb.pp("proj"))?,
            norm: layer_norm(cout, TORCH_LN_EPS, vb.pp("layer_norm"))?,
        })
    }

    /// `(B, C, H, W)` → `((B, h·w, C'), h, w)`.
    fn forward(&self, x: &Tensor) -> Result<(Tensor, usize, usize)> {
        let x = self.proj.forward(x)?;
        let (_, _, h, w) = x.dims4()?;
        Ok((self.norm.forward(&map_to_tokens(&x)?)?, h, w))
    }
}

/// Pre-norm transformer layer (`block.{i}.{j}`).
#[derive(Debug, Clone)]
struct Layer {
    norm1: LayerNorm,
    attention: EfficientSelfAttention,
    norm2: LayerNorm,
    mlp: MixFfn,
}

impl Layer {
    fn new(cfg: &Config, stage: usize, vb: VarBuilder) -> Result<Self> {
        let hidden = cfg.hidden_sizes[stage];
        Ok(Self {
            norm1: layer_norm(hidden, TORCH_LN_EPS, vb.pp("layer_norm_1"))?,
            attention: EfficientSelfAttention::new(
                hidden,
                cfg.num_attention_heads[stage],
                cfg.sr_ratios[stage],
                vb.pp("attention"),
            )?,
            norm2: layer_norm(hidden, TORCH_LN_EPS, vb.pp("layer_norm_2"))?,
            mlp: MixFfn::new(
                hidden,
                hidden * cfg.mlp_ratios[stage],
                cfg.hidden_act,
                vb.pp("mlp"),
            )?,
        })
    }

    fn forward(&self, x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
        let x = (self.attention.forward(&self.norm1.forward(x)?, h, w)? + x)?;
        self.mlp.forward(&self.norm2.forward(&x)?, h, w)? + x
    }
}

/// The hierarchical encoder (`segformer.encoder`).
#[derive(Debug, Clone)]
pub struct MixTransformer {
    embeddings: Vec<OverlapPatchEmbeddings>,
    blocks: Vec<Vec<Layer>>,
    norms: Vec<LayerNorm>,
}

impl MixTransformer {
    /// `vb` points at `segformer.encoder`.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let n = cfg.num_encoder_blocks;
        let (mut embeddings, mut blocks, mut norms) = (vec![], vec![], vec![]);
        for i in 0..n {
            let cin = if i == 0 {
                cfg.num_channels
            } else {
                cfg.hidden_sizes[i - 1]
            };
            embeddings.push(OverlapPatchEmbeddings::new(
                cfg.patch_sizes[i],
                cfg.strides[i],
                cin,
                cfg.hidden_sizes[i],
                vb.pp(format!("patch_embeddings.{i}")),
            )?);
            let layers = (0..cfg.depths[i])
                .map(|j| Layer::new(cfg, i, vb.pp(format!("block.{i}.{j}"))))
                .collect::<Result<Vec<_>>>()?;
            blocks.push(layers);
            norms.push(layer_norm(
                cfg.hidden_sizes[i],
                TORCH_LN_EPS,
                vb.pp(format!("layer_norm.{i}")),
            )?);
        }
        Ok(Self {
            embeddings,
            blocks,
            norms,
        })
    }

    /// Pixels `(B, C, H, W)` → one `(B, C_i, H_i, W_i)` feature map per stage.
    pub fn forward(&self, pixels: &Tensor) -> Result<Vec<Tensor>> {
        let mut x = pixels.clone();
        let mut out = Vec::with_capacity(self.embeddings.len());
        for ((embed, layers), norm) in self.embeddings.iter().zip(&self.blocks).zip(&self.norms) {
            let (mut t, h, w) = embed.forward(&x)?;
            for layer in layers {
                t = layer.forward(&t, h, w)?;
            }
            x = tokens_to_map(&norm.forward(&t)?, h, w)?.contiguous()?;
            out.push(x.clone());
        }
        Ok(out)
    }
}
