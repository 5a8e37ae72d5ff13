//! `SegformerForSemanticSegmentation`: encoder + decode head, keys as in the checkpoints.

use crate::decode_head::DecodeHead;
use crate::encoder::MixTransformer;
use crate::Config;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// SegFormer for semantic segmentation (transformers' `SegformerForSemanticSegmentation`).
///
/// Built from a `VarBuilder` over the checkpoint's keys (`segformer.encoder.*`,
/// `decode_head.*`); `forward` maps normalised pixels `(B, 3, H, W)` to logits
/// `(B, num_labels, ⌈H/4⌉, ⌈W/4⌉)`.
#[derive(Debug, Clone)]
pub struct SegformerForSemanticSegmentation {
    encoder: MixTransformer,
    decode_head: DecodeHead,
    num_labels: usize,
}

impl SegformerForSemanticSegmentation {
    /// Builds the model; `vb` is the checkpoint root.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        if let Err(reason) = cfg.validate() {
            candle_core::bail!("invalid SegFormer config: {reason}");
        }
        Ok(Self {
            encoder: MixTransformer::new(cfg, vb.pp("segformer").pp("encoder"))?,
            decode_head: DecodeHead::new(cfg, vb.pp("decode_head"))?,
            num_labels: cfg.num_labels(),
        })
    }

    /// Number of classes.
    pub fn num_labels(&self) -> usize {
        self.num_labels
    }

    /// The four encoder feature maps (finest first).
    pub fn encoder_hidden_states(&self, pixels: &Tensor) -> Result<Vec<Tensor>> {
        self.encoder.forward(pixels)
    }
}

impl Module for SegformerForSemanticSegmentation {
    fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        self.decode_head.forward(&self.encoder.forward(pixels)?)
    }
}
