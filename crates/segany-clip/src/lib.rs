//! CLIP vision and text towers, the exact CLIP tokenizer and CLIP Surgery on candle.
//!
//! * One model implementation ([`ClipModel`]) written against OpenAI's key names, fed from
//!   transformers, open_clip or OpenAI checkpoints through one rename map per [`Layout`].
//! * Dense outputs: every image token after `ln_post`/`proj` ([`ClipModel::encode_image_tokens`])
//!   and every `ln_final` text token ([`TextFeatures::tokens`]).
//! * CLIP Surgery ([`VisionMode::Surgery`]), the v-v attention path of the "CS-ViT" models
//!   SSP-SAM uses.
//!
//! This crate never reads files: weights come in as a `VarBuilder`, tokenizers as bytes. The
//! [`io`] module holds the small amount of file glue the examples need.
#![warn(missing_docs)]

pub mod activation;
pub mod attention;
pub mod backend;
pub mod block;
pub mod config;
pub mod error;
mod infer;
pub mod io;
pub mod keys;
pub mod layout;
pub mod model;
pub mod preprocess;
pub mod text;
pub mod tokenizer;
pub mod transformer;
pub mod vision;
pub mod zero_shot;

pub use activation::Activation;
pub use backend::canonical_var_builder;
pub use config::{ClipConfig, ClipTextConfig, ClipVisionConfig};
pub use error::{ClipError, Result};
pub use layout::{Layout, Source};
pub use model::{l2_normalize, ClipModel, ClipOutput, LoadOptions};
pub use preprocess::{
    clip_preprocess, ssp_sam_preprocess, CanvasPlacement, RgbImage, CLIP_MEAN, CLIP_STD,
};
pub use text::{TextFeatures, TextTransformer};
pub use tokenizer::{clean_text, ClipTokenizer, TokenizeOptions, EOT_ID, SOT_ID};
pub use vision::{VisionMode, VisionTransformer};
pub use zero_shot::ZeroShotClassifier;
