//! The full SSP-SAM forward after the encoders: the head's prompts through SAM's prompt encoder
//! (no points, boxes or masks: the no-mask dense embedding) and the fine-tuned mask decoder with
//! mask token 0, then the logits resized to the padded 512 frame.

use crate::config::SspSamConfig;
use crate::head::{ClipFeatures, HeadOutput, SspHead};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use segany_sam_decoder::{MaskDecoder, PromptEncoder};

/// Everything SSP-SAM returns for a batch.
#[derive(Debug, Clone)]
pub struct SspOutput {
    /// Semantic-spatial prompts `(B, 128, 256)`.
    pub prompts: Tensor,
    /// Auxiliary box `(B, 4)`: sigmoid `(cx, cy, w, h)` on the CLIP canvas.
    pub boxes: Tensor,
    /// Mask-decoder logits `(B, 1, 256, 256)` in the padded SAM frame.
    pub low_res_logits: Tensor,
    /// Logits `(B, 1, 512, 512)` in the padded 512 frame (256 → 1024 → 512, bilinear).
    pub logits_512: Tensor,
}

/// SSP-SAM without its encoders: [`SspHead`] + SAM's prompt encoder and mask decoder (under
/// `sam.` in the checkpoint).
#[derive(Debug, Clone)]
pub struct SspSam {
    /// The fusion head.
    pub head: SspHead,
    /// SAM's prompt encoder (only `no_mask_embed` and the positional encoding are used).
    pub prompt_encoder: PromptEncoder,
    /// SAM's fine-tuned mask decoder.
    pub mask_decoder: MaskDecoder,
    cfg: SspSamConfig,
}

/// Whether a checkpoint key is stored but unused by the forward pass (`img2img_attn.*`,
/// `norm_text_cond_img.*`), or belongs to encoders loaded elsewhere (`encoder.*` CLIP,
/// `sam.image_encoder.*`). Pass it to `CheckedVarBuilder::finish`.
pub fn is_ignored_key(name: &str) -> bool {
    name.starts_with("img2img_attn.")
        || name.starts_with("norm_text_cond_img.")
        || name.starts_with("encoder.")
        || name.starts_with("sam.image_encoder.")
}

impl SspSam {
    /// Loads the head at the root of `vb` and SAM's parts under `sam.`.
    pub fn new(cfg: &SspSamConfig, vb: VarBuilder) -> Result<Self> {
        let sam = vb.pp("sam");
        Ok(Self {
            head: SspHead::new(cfg, vb.clone())?,
            prompt_encoder: PromptEncoder::new(&cfg.prompt_encoder, sam.pp("prompt_encoder"))?,
            mask_decoder: MaskDecoder::new(&cfg.mask_decoder, sam.pp("mask_decoder"))?,
            cfg: cfg.clone(),
        })
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &SspSamConfig {
        &self.cfg
    }

    /// Mask logits for prompts `(B, 128, 256)` and a SAM image embedding `(1 or B, 256, 64, 64)`
    /// (shared by every prompt set when its batch is 1): `(low_res (B,1,256,256),
    /// logits_512 (B,1,512,512))`.
    pub fn decode(&self, prompts: &Tensor, image_embedding: &Tensor) -> Result<(Tensor, Tensor)> {
        // The no-mask dense embedding `(1, D, g, g)` serves every prompt set; with a shared image
        // embedding the decoder projects the image once for the whole batch.
        let (_, dense) = self.prompt_encoder.forward(None, None, None)?;
        let image_pe = self.prompt_encoder.get_dense_pe()?;
        let dtype = dense.dtype();
        let (low_res, _iou) = self.mask_decoder.forward(
            &image_embedding.to_dtype(dtype)?,
            &image_pe,
            &prompts.to_dtype(dtype)?,
            &dense,
            false,
        )?;
        let full = self.cfg.prompt_encoder.image_size;
        let m = self.cfg.mask_size;
        let logits_512 = low_res
            .upsample_bilinear2d(full, full, false)?
            .upsample_bilinear2d(m, m, false)?;
        Ok((low_res, logits_512))
    }

    /// The whole forward after the encoders.
    pub fn forward(&self, clip: &ClipFeatures, image_embedding: &Tensor) -> Result<SspOutput> {
        let HeadOutput { prompts, boxes } = self.head.forward(clip)?;
        let (low_res_logits, logits_512) = self.decode(&prompts, image_embedding)?;
        Ok(SspOutput {
            prompts,
            boxes,
            low_res_logits,
            logits_512,
        })
    }
}
