//! SegFormer semantic segmentation, the semantic branch of Semantic Segment Anything (SSA).
//!
//! [`SegformerForSemanticSegmentation`] reproduces transformers' model of the same name on the
//! checkpoints' own keys (`segformer.encoder.*`, `decode_head.*`), [`ImageProcessor`] its
//! `SegformerImageProcessor` and [`class_map`] SSA's post-processing (bilinear upsampling with
//! `align_corners=True` to the image size, then argmax). [`Config`] deserialises transformers'
//! `config.json` and has presets for NVIDIA's ADE20K and Cityscapes checkpoints; the class
//! tables are SSA's.
//!
//! # Why not `candle_transformers::models::segformer`
//! candle-transformers 0.11.1 ships a SegFormer whose semantic-segmentation model deviates from
//! transformers' in four places, so this crate re-implements it (same structure and keys):
//! 1. the decode head upsamples the stage maps with **nearest** neighbours; transformers uses
//!    bilinear (`align_corners=False`);
//! 2. the classifier is built **without bias** (`conv2d_no_bias`), so `decode_head.classifier.bias`
//!    is silently ignored;
//! 3. every LayerNorm uses `config.layer_norm_eps` (1e-6 in the published configs); transformers
//!    builds them with PyTorch's default 1e-5 and ignores `layer_norm_eps`;
//! 4. the decode head's BatchNorm also uses `layer_norm_eps` instead of 1e-5.
//!
//! Its encoder sub-modules are private, so they cannot be reused piecemeal; the test
//! `candle_transformers_deviates` measures the difference on the parity fixture.
//!
//! Loading from files or the hub lives in the `segany` facade (`segany::semantic`).
#![warn(missing_docs)]

mod attention;
mod config;
mod decode_head;
mod encoder;
mod labels;
mod model;
mod postprocess;
mod preprocess;

pub use config::{Config, Dataset, Variant};
pub use decode_head::DecodeHead;
pub use encoder::MixTransformer;
pub use labels::{
    display_name, ADE20K_CLASSES, ADE20K_PALETTE, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE,
};
pub use model::SegformerForSemanticSegmentation;
pub use postprocess::class_map;
pub use preprocess::ImageProcessor;

/// Checkpoint tensors the model does not use (BatchNorm's step counter).
pub fn is_unused_key(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}
