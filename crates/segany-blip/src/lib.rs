//! BLIP image captioning for SSA-engine, built on candle-transformers' `models::blip`, and the
//! rule that turns captions into candidate class names.
//!
//! * [`BlipCaptioner`]: `BlipForConditionalGeneration` (`Salesforce/blip-image-captioning-base`
//!   / `-large`) with transformers' greedy `generate` as SSA calls it ([`GenerationConfig`]).
//! * [`blip_preprocess`]: `BlipImageProcessor` (384², Pillow bicubic, CLIP mean/std).
//! * [`CaptionDecoder`]: ids → text with the checkpoint's BERT `tokenizer.json`.
//! * [`noun_phrases()`]: a deterministic stand-in for spaCy's `noun_chunks`.
//!
//! Like every segany model crate this one reads no files: weights arrive as a `VarBuilder`
//! (after [`tie_lm_head`] on the checkpoint's tensors), the config and tokenizer as text/bytes.
#![warn(missing_docs)]

pub mod config;
pub mod decode;
pub mod model;
pub mod noun_phrases;
pub mod preprocess;

pub use config::{BlipConfig, BlipTextConfig, BlipVisionConfig};
pub use decode::{clean_up_tokenization, CaptionDecoder};
pub use model::{is_ignored_key, tie_lm_head, BlipCaptioner, GenerationConfig};
pub use noun_phrases::noun_phrases;
pub use preprocess::{blip_preprocess, BLIP_IMAGE_SIZE, BLIP_MEAN, BLIP_STD};
