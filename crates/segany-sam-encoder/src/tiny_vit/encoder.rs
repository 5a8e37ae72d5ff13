//! The TinyViT image encoder: stem, stages, neck.

use super::block::{TinyBlockSpec, TinyViTBlock};
use super::config::scaled;
use super::conv_stage::{MBConv, PatchEmbed, PatchMerging};
use super::TinyViTConfig;
use crate::Neck;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// The blocks of one stage.
#[derive(Debug, Clone)]
enum StageBlocks {
    /// Stage 0: MBConv blocks on NCHW maps.
    Conv(Vec<MBConv>),
    /// Later stages: TinyViT blocks on tokens.
    Attention(Vec<TinyViTBlock>),
}

/// One stage (`layers.i`): its blocks and the patch merging that ends it (all but the last).
#[derive(Debug, Clone)]
struct Stage {
    blocks: StageBlocks,
    downsample: Option<PatchMerging>,
}

/// MobileSAM's `TinyViT` encoder. Input `(B, 3, S, S)` normalised pixels, output
/// `(B, output_channels, g, g)` with `g` = [`TinyViTConfig::grid_size`] (64 at 1024²).
///
/// The checkpoint's classification head (`norm_head`, `head`) is not used by SAM and not
/// loaded; a stored `attention_bias_idxs` buffer is verified.
#[derive(Debug, Clone)]
pub struct TinyViT {
    patch_embed: PatchEmbed,
    stages: Vec<Stage>,
    neck: Neck,
    cfg: TinyViTConfig,
}

impl TinyViT {
    /// Loads the encoder from `vb` (usually `vb.pp("image_encoder")`).
    pub fn new(cfg: &TinyViTConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::msg)?;
        let dims = &cfg.embed_dims;
        let bn = cfg.batch_norm_eps;
        let patch_embed = PatchEmbed::new(cfg.num_channels, dims[0], bn, vb.pp("patch_embed"))?;
        let n = cfg.num_stages();
        let layers = vb.pp("layers");
        let mut stages = Vec::with_capacity(n);
        for (i, &dim) in dims.iter().enumerate() {
            let vl = layers.pp(i);
            let vbb = vl.pp("blocks");
            let blocks = if i == 0 {
                StageBlocks::Conv(
                    (0..cfg.depths[0])
                        .map(|j| MBConv::new(dim, cfg.mbconv_expand_ratio, bn, vbb.pp(j)))
                        .collect::<Result<_>>()?,
                )
            } else {
                let spec = TinyBlockSpec {
                    dim,
                    num_heads: cfg.num_heads[i],
                    window: cfg.window_sizes[i],
                    mlp_hidden: scaled(dim, cfg.mlp_ratio),
                    local_conv_size: cfg.local_conv_size,
                    ln_eps: cfg.layer_norm_eps,
                    bn_eps: bn,
                };
                StageBlocks::Attention(
                    (0..cfg.depths[i])
                        .map(|j| TinyViTBlock::new(spec, vbb.pp(j)))
                        .collect::<Result<_>>()?,
                )
            };
            let downsample = if i + 1 < n {
                let out = dims[i + 1];
                let stride = TinyViTConfig::merge_stride(out);
                Some(PatchMerging::new(
                    dim,
                    out,
                    stride,
                    bn,
                    vl.pp("downsample"),
                )?)
            } else {
                None
            };
            stages.push(Stage { blocks, downsample });
        }
        let (last, o) = (dims[n - 1], cfg.output_channels);
        Ok(Self {
            patch_embed,
            stages,
            neck: Neck::new(last, o, vb.pp("neck"))?,
            cfg: cfg.clone(),
        })
    }

    /// The configuration the encoder was built with.
    pub fn config(&self) -> &TinyViTConfig {
        &self.cfg
    }

    /// Stem and stages: `(B, 3, S, S)` → the last stage's map `(B, C_last, g, g)`.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        // NCHW throughout; attention stages flatten to tokens and back.
        let mut x = self.patch_embed.forward(x)?;
        for stage in &self.stages {
            match &stage.blocks {
                StageBlocks::Conv(blocks) => {
                    for blk in blocks {
                        x = blk.forward(&x)?;
                    }
                }
                StageBlocks::Attention(blocks) => {
                    let (b, c, h, w) = x.dims4()?;
                    let mut t = x.flatten_from(2)?.transpose(1, 2)?.contiguous()?;
                    for blk in blocks {
                        t = blk.forward(&t, h, w)?;
                    }
                    x = t.transpose(1, 2)?.reshape((b, c, h, w))?;
                }
            }
            if let Some(ds) = &stage.downsample {
                x = ds.forward(&x)?;
            }
        }
        Ok(x)
    }

    /// The neck: `(B, C_last, g, g)` → `(B, output_channels, g, g)`.
    pub fn neck(&self, x: &Tensor) -> Result<Tensor> {
        self.neck.forward(x)
    }
}

impl Module for TinyViT {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.neck(&self.features(x)?)
    }
}
