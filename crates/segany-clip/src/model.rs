//! The two-tower CLIP model and its checkpoint loader.

use candle_core::{DType, Module, Tensor, D};
use candle_nn::VarBuilder;

use crate::activation::Activation;
use crate::backend::canonical_var_builder;
use crate::config::ClipConfig;
use crate::error::{ClipError, Result};
use crate::keys::check_keys;
use crate::layout::Layout;
use crate::text::{TextFeatures, TextTransformer};
use crate::vision::{VisionMode, VisionTransformer};

/// What [`ClipModel::load`] should assume about a checkpoint; `None` fields are detected.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Key layout; detected from probe keys when `None`.
    pub layout: Option<Layout>,
    /// Geometry (e.g. from `config.json`); inferred from tensor shapes when `None`.
    pub config: Option<ClipConfig>,
    /// Activation used when the geometry is inferred (default QuickGELU, OpenAI's).
    pub activation: Option<Activation>,
}

/// Similarity logits and normalised embeddings of a batch of images and texts.
#[derive(Debug, Clone)]
pub struct ClipOutput {
    /// `exp(logit_scale) · imageᵀ·text`, `[B, T]`.
    pub logits_per_image: Tensor,
    /// Transpose of `logits_per_image`, `[T, B]`.
    pub logits_per_text: Tensor,
    /// L2-normalised image embeddings `[B, D]`.
    pub image_embeds: Tensor,
    /// L2-normalised text embeddings `[T, D]`.
    pub text_embeds: Tensor,
}

/// CLIP: vision tower, text tower and the learned temperature.
#[derive(Debug, Clone)]
pub struct ClipModel {
    vision: VisionTransformer,
    text: TextTransformer,
    logit_scale: f64,
    cfg: ClipConfig,
}

/// L2-normalises along the last dimension.
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    x.broadcast_div(&x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)
}

impl ClipModel {
    /// Builds the model from a `VarBuilder` over canonical (OpenAI) names — a checkpoint in
    /// OpenAI layout directly, or any layout through [`crate::canonical_var_builder`].
    pub fn new(cfg: &ClipConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let vision = VisionTransformer::new(&cfg.vision, cfg.embed_dim, vb.pp("visual"))?;
        let text = TextTransformer::new(&cfg.text, cfg.embed_dim, vb.clone())?;
        // Stored as a scalar (OpenAI, transformers) or as [1] (some converted files).
        let logit_scale = if vb.contains_tensor("logit_scale") {
            let t = match vb.get_unchecked_dtype("logit_scale", DType::F64) {
                Ok(t) => t,
                // Backends that need a shape (e.g. `VarBuilder::zeros`).
                Err(_) => {
                    vb.get_with_hints_dtype((), "logit_scale", Default::default(), DType::F64)?
                }
            };
            t.flatten_all()?.get(0)?.to_scalar::<f64>()?
        } else {
            cfg.logit_scale_init
        };
        Ok(Self {
            vision,
            text,
            logit_scale,
            cfg: cfg.clone(),
        })
    }

    /// Loads from a checkpoint `VarBuilder` at its root in any supported [`Layout`]:
    /// detects the layout, infers the geometry when no config is given, checks that every
    /// key is present, then builds the model. Errors name the layout and key at fault.
    pub fn load(checkpoint: VarBuilder, opts: &LoadOptions) -> Result<Self> {
        let layout = match opts.layout {
            Some(l) => l,
            None => Layout::detect(&checkpoint)?,
        };
        let canonical = canonical_var_builder(checkpoint.clone(), layout);
        let cfg = match &opts.config {
            Some(c) => {
                c.validate()?;
                c.clone()
            }
            None => {
                let act = opts.activation.unwrap_or(Activation::QuickGelu);
                check_core_keys(layout, &checkpoint)?;
                ClipConfig::infer_from_weights(&canonical, act)?
            }
        };
        check_keys(&cfg, layout, &checkpoint)?;
        Self::new(&cfg, canonical).map_err(shape_error)
    }

    /// The geometry.
    pub fn config(&self) -> &ClipConfig {
        &self.cfg
    }

    /// The arithmetic of both towers' linear layers on the CPU in f32. [`segany_core::nn::CpuMatmul::Bf16`]
    /// rounds their inputs and weights to bf16 (sums in f32) on CPUs with AVX-512 BF16, about
    /// twice as fast; embeddings then differ from f32 at the level of bf16's rounding (cosine
    /// similarity to the f32 embedding ≥ 0.999 in this crate's tests). Returns whether bf16 is
    /// on (`false` on other CPUs, other devices and dtypes, or for [`segany_core::nn::CpuMatmul::F32`]).
    ///
    /// ```
    /// # use candle_core::{DType, Device};
    /// # use candle_nn::VarBuilder;
    /// use segany_clip::{ClipConfig, ClipModel};
    /// use segany_core::nn::CpuMatmul;
    /// let mut cfg = ClipConfig::vit_b_32(); // made small for the example
    /// (cfg.vision.width, cfg.vision.layers, cfg.vision.heads, cfg.vision.mlp_dim) = (64, 1, 2, 256);
    /// (cfg.text.width, cfg.text.layers, cfg.text.heads, cfg.text.mlp_dim) = (64, 1, 2, 256);
    /// cfg.embed_dim = 32;
    /// let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
    /// let mut model = ClipModel::new(&cfg, vb)?;
    /// let bf16 = model.set_cpu_matmul(CpuMatmul::Bf16)?;
    /// println!("bf16 products: {bf16}");
    /// let px = candle_core::Tensor::zeros((1, 3, 224, 224), DType::F32, &Device::Cpu)?;
    /// assert_eq!(model.vision().forward_tokens(&px, segany_clip::VisionMode::Plain)?.dim(1)?, 50);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn set_cpu_matmul(
        &mut self,
        mode: segany_core::nn::CpuMatmul,
    ) -> candle_core::Result<bool> {
        Ok(self.vision.set_cpu_matmul(mode)? & self.text.set_cpu_matmul(mode)?)
    }

    /// The vision tower.
    pub fn vision(&self) -> &VisionTransformer {
        &self.vision
    }

    /// The text tower.
    pub fn text(&self) -> &TextTransformer {
        &self.text
    }

    /// `exp(logit_scale)`, the factor applied to cosine similarities (100 for OpenAI CLIP).
    pub fn logit_scale(&self) -> f64 {
        self.logit_scale.exp()
    }

    fn check_pixels(&self, px: &Tensor) -> Result<()> {
        let s = self.cfg.vision.image_size;
        let d = px.dims();
        if d.len() != 4 || d[1] != 3 || d[2] != s || d[3] != s || d[0] == 0 {
            return Err(ClipError::ImageShape {
                actual: d.to_vec(),
                size: s,
            });
        }
        Ok(())
    }

    fn check_ids(&self, ids: &Tensor) -> Result<()> {
        let d = ids.dims();
        let ctx = self.cfg.text.context_length;
        if d.len() != 2 || d[0] == 0 || d[1] == 0 || d[1] > ctx {
            return Err(ClipError::TokenIds {
                reason: format!("shape {d:?}, expected [T, L] with T > 0 and 0 < L <= {ctx}"),
            });
        }
        if ids.dtype().is_float() {
            return Err(ClipError::TokenIds {
                reason: format!("dtype {:?}, expected an integer type", ids.dtype()),
            });
        }
        let max = ids
            .to_dtype(DType::I64)?
            .flatten_all()?
            .max(0)?
            .to_scalar::<i64>()?;
        let min = ids
            .to_dtype(DType::I64)?
            .flatten_all()?
            .min(0)?
            .to_scalar::<i64>()?;
        if min < 0 || max as usize >= self.cfg.text.vocab_size {
            return Err(ClipError::TokenIds {
                reason: format!(
                    "ids range over [{min}, {max}], vocabulary has {}",
                    self.cfg.text.vocab_size
                ),
            });
        }
        Ok(())
    }

    /// Projected image embeddings `[B, D]` (not normalised) for pixels `[B, 3, S, S]`.
    pub fn encode_image(&self, px: &Tensor) -> Result<Tensor> {
        self.check_pixels(px)?;
        Ok(self.vision.forward(px)?)
    }

    /// All image tokens after `ln_post` and `proj`, `[B, 1+N, D]` (not normalised).
    pub fn encode_image_tokens(&self, px: &Tensor, mode: VisionMode) -> Result<Tensor> {
        self.check_pixels(px)?;
        Ok(self.vision.forward_tokens(px, mode)?)
    }

    /// Projected EOT embeddings `[T, D]` and `ln_final` token features `[T, L, W]`.
    pub fn encode_text(&self, ids: &Tensor) -> Result<TextFeatures> {
        self.check_ids(ids)?;
        Ok(self.text.forward_features(ids)?)
    }

    /// Projected EOT embeddings `[T, D]` (not normalised) only: the same values as
    /// [`Self::encode_text`]'s `embeds`, computed on the ids up to the last end-of-text token
    /// (the padding after it cannot reach it through causal attention).
    pub fn encode_text_embeds(&self, ids: &Tensor) -> Result<Tensor> {
        self.check_ids(ids)?;
        Ok(self.text.forward_embeds(ids)?)
    }

    /// Full CLIP forward: normalised embeddings and scaled cosine logits.
    pub fn forward(&self, px: &Tensor, ids: &Tensor) -> Result<ClipOutput> {
        let image_embeds = l2_normalize(&self.encode_image(px)?)?;
        let text_embeds = l2_normalize(&self.encode_text_embeds(ids)?)?;
        let logits_per_image = (image_embeds.matmul(&text_embeds.t()?)? * self.logit_scale())?;
        let logits_per_text = logits_per_image.t()?;
        Ok(ClipOutput {
            logits_per_image,
            logits_per_text,
            image_embeds,
            text_embeds,
        })
    }
}

/// Before inferring the geometry, make sure the tensors it is read from exist.
fn check_core_keys(layout: Layout, checkpoint: &VarBuilder) -> Result<()> {
    for canonical in [
        "visual.conv1.weight",
        "visual.positional_embedding",
        "text_projection",
        "ln_final.weight",
        "positional_embedding",
        "token_embedding.weight",
        "visual.transformer.resblocks.0.mlp.c_fc.weight",
        "transformer.resblocks.0.mlp.c_fc.weight",
    ] {
        let keys = layout.source(canonical).keys();
        if !keys.iter().any(|k| checkpoint.contains_tensor(k)) {
            return Err(ClipError::MissingKey {
                layout,
                key: keys.first().cloned().unwrap_or_default(),
                canonical: canonical.into(),
            });
        }
    }
    Ok(())
}

fn shape_error(e: candle_core::Error) -> ClipError {
    match e {
        candle_core::Error::UnexpectedShape { msg, expected, got } => ClipError::ShapeMismatch {
            key: msg,
            expected: expected.dims().to_vec(),
            actual: got.dims().to_vec(),
        },
        other => ClipError::Candle(other),
    }
}
