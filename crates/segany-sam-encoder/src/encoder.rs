//! The ViT image encoder: patch embedding, position embedding, blocks, neck.

use crate::block::{Block, Buffers};
use crate::patch_embed::PatchEmbed;
use crate::ImageEncoderConfig;
use crate::Neck;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::CpuMatmul;

/// SAM's `ImageEncoderViT`. Input `(B, 3, S, S)` normalised pixels, output
/// `(B, output_channels, S/16, S/16)`.
#[derive(Debug, Clone)]
pub struct ImageEncoderViT {
    patch_embed: PatchEmbed,
    pos_embed: Option<Tensor>,
    blocks: Vec<Block>,
    neck: Neck,
    cfg: ImageEncoderConfig,
}

impl ImageEncoderViT {
    /// Loads the encoder from `vb` (usually `vb.pp("image_encoder")`).
    pub fn new(cfg: &ImageEncoderConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::msg)?;
        let e = cfg.hidden_size;
        let patch_embed = PatchEmbed::new(
            cfg.num_channels,
            e,
            cfg.patch_size,
            vb.pp("patch_embed").pp("proj"),
        )?;
        let pos_embed = if cfg.use_abs_pos {
            // Any grid is accepted; a grid other than the input's is resized on use.
            let g = cfg.grid_size();
            let t = if vb.contains_tensor("pos_embed") {
                vb.get_unchecked("pos_embed")?
            } else {
                vb.get((1, g, g, e), "pos_embed")?
            };
            if t.rank() != 4 || t.dim(0)? != 1 || t.dim(3)? != e {
                candle_core::bail!(
                    "image_encoder.pos_embed: expected [1, g, g, {e}], found {:?}",
                    t.dims()
                );
            }
            Some(t)
        } else {
            None
        };
        let vb_b = vb.pp("blocks");
        let blocks = (0..cfg.num_hidden_layers)
            .map(|i| {
                let ws = if cfg.global_attn_indexes.contains(&i) {
                    0
                } else {
                    cfg.window_size
                };
                Block::new(cfg, ws, vb_b.pp(i))
            })
            .collect::<Result<Vec<_>>>()?;
        let o = cfg.output_channels;
        Ok(Self {
            patch_embed,
            pos_embed,
            blocks,
            neck: Neck::new(e, o, vb.pp("neck"))?,
            cfg: cfg.clone(),
        })
    }

    /// The arithmetic of the blocks' products on the CPU in f32 ([`CpuMatmul`]): with
    /// [`CpuMatmul::Bf16`], every block's `qkv`, `proj`, `lin1` and `lin2` round their input
    /// and weight to bf16 and sum in f32, on CPUs with AVX-512 BF16; attention scores with
    /// their relative positions, softmax, norms, the patch embedding and the neck stay in f32.
    /// Returns whether bf16 is on (`false` on other CPUs, devices or dtypes, which keep their
    /// arithmetic). The embedding's error against the f32 reference is measured in the
    /// workspace's `tests/sam_parity.rs`.
    ///
    /// ```
    /// # use candle_core::{DType, Device};
    /// # use candle_nn::{VarBuilder, VarMap};
    /// use candle_core::Module;
    /// use segany_core::nn::CpuMatmul;
    /// use segany_sam_encoder::{ImageEncoderConfig, ImageEncoderViT};
    /// let cfg = ImageEncoderConfig::tiny_for_tests(); // ImageEncoderConfig::vit_b() for SAM
    /// let varmap = VarMap::new();
    /// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let mut encoder = ImageEncoderViT::new(&cfg, vb)?;
    /// let bf16 = encoder.set_cpu_matmul(CpuMatmul::Bf16)?;
    /// println!("bf16 products: {bf16}");
    /// let px = candle_core::Tensor::zeros((1, 3, 160, 160), DType::F32, &Device::Cpu)?;
    /// assert_eq!(encoder.forward(&px)?.dims(), [1, 32, 10, 10]);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn set_cpu_matmul(&mut self, mode: CpuMatmul) -> Result<bool> {
        let mut on = true;
        for block in &mut self.blocks {
            on &= block.set_cpu_matmul(mode)?;
        }
        Ok(on)
    }

    /// The configuration the encoder was built with.
    pub fn config(&self) -> &ImageEncoderConfig {
        &self.cfg
    }

    /// Patch embedding plus absolute position embedding: `(B, g, g, C)`.
    pub fn embed(&self, x: &Tensor) -> Result<Tensor> {
        let pos = match &self.pos_embed {
            None => None,
            Some(pos) => {
                let p = self.cfg.patch_size;
                let (gh, gw) = (x.dim(2)? / p, x.dim(3)? / p);
                if pos.dim(1)? != gh || pos.dim(2)? != gw {
                    Some(
                        pos.permute((0, 3, 1, 2))?
                            .upsample_bilinear2d(gh, gw, false)?
                            .permute((0, 2, 3, 1))?,
                    )
                } else {
                    Some(pos.clone())
                }
            }
        };
        self.patch_embed.forward_tokens(x, pos.as_ref())
    }

    /// Runs the transformer blocks on embedded tokens `(B, g, g, C)`.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The neck: `(B, g, g, C)` tokens → `(B, output_channels, g, g)`.
    pub fn neck(&self, x: &Tensor) -> Result<Tensor> {
        self.neck.forward_tokens(x)
    }
}

impl ImageEncoderViT {
    /// The blocks on embedded tokens `(B, g, g, C)`: on the CPU in f32 through buffers
    /// reused by every block ([`Block::forward_buffers`]), elsewhere block by block.
    fn run_blocks(&self, x: Tensor) -> Result<Tensor> {
        let buffered =
            segany_core::nn::is_cpu_f32(&x) && self.blocks.iter().all(Block::buffers_supported);
        if !buffered {
            let mut x = x;
            for blk in &self.blocks {
                x = blk.forward(&x)?;
            }
            return Ok(x);
        }
        let (b, h, w, c) = x.dims4()?;
        let mut buf = Buffers::new(x.flatten_all()?.to_vec1()?, c, self.cfg.mlp_dim());
        for blk in &self.blocks {
            blk.forward_buffers(&mut buf, (b, h, w))?;
        }
        Tensor::from_vec(buf.x, (b, h, w, c), x.device())
    }
}

impl Module for ImageEncoderViT {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.embed(x)?;
        self.neck(&self.run_blocks(x)?)
    }
}

#[cfg(test)]
mod tests {
    use super::ImageEncoderViT;
    use crate::ImageEncoderConfig;
    use candle_core::{DType, Device, Module, Result, Tensor};
    use candle_nn::{VarBuilder, VarMap};

    /// An encoder with random weights (set before the layers are built: `Linear` copies its
    /// weight at build time).
    fn random_encoder(cfg: &ImageEncoderConfig) -> Result<ImageEncoderViT> {
        let varmap = VarMap::new();
        ImageEncoderViT::new(
            cfg,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )?;
        let tensors = varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("varmap lock poisoned".into()))?
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    Tensor::randn(0f32, 0.3, v.shape(), &Device::Cpu)?,
                ))
            })
            .collect::<Result<_>>()?;
        ImageEncoderViT::new(
            cfg,
            VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
        )
    }

    /// The blocks through reused buffers give the values of the blocks one by one: windows
    /// with padding (a 10 × 10 grid in windows of 4) and global attention, two images, an MLP
    /// narrower and one wider than the `qkv` projection (the shared scratch's two sizes).
    #[test]
    fn reused_buffers_match_block_by_block() -> Result<()> {
        for mlp_dim in [128, 256] {
            let cfg = ImageEncoderConfig {
                mlp_dim: Some(mlp_dim),
                ..ImageEncoderConfig::tiny_for_tests()
            };
            let encoder = random_encoder(&cfg)?;
            let g = cfg.grid_size();
            let x = Tensor::randn(0f32, 1.0, (2, g, g, cfg.hidden_size), &Device::Cpu)?;
            let mut expected = x.clone();
            for block in encoder.blocks() {
                expected = block.forward(&expected)?;
            }
            let ours = encoder.run_blocks(x.clone())?;
            assert_eq!(ours.dims(), expected.dims());
            let d: f32 = (ours - &expected)?.abs()?.max_all()?.to_scalar()?;
            let moved: f32 = (expected - x)?.abs()?.max_all()?.to_scalar()?;
            assert_eq!(d, 0.0, "MLP {mlp_dim}: max |Δ| {d}");
            assert!(moved > 0.1, "the blocks change the tokens ({moved})");
        }
        Ok(())
    }
}
