//! # segany
//!
//! Promptable, semantic and referring image segmentation on [candle](https://github.com/huggingface/candle): Segment Anything (SAM)
//! with exact reference pre/post-processing, loading both the transformers
//! (`facebook/sam-vit-*`) and Meta checkpoint layouts from the Hugging Face hub or local files.
//!
//! ```no_run
//! use segany::{Sam, SamPredictor, Prompt};
//! # fn main() -> segany::Result<()> {
//! let sam = Sam::load("facebook/sam-vit-base", &candle_core::Device::Cpu, candle_core::DType::F32)?;
//! let mut predictor = SamPredictor::new(sam);
//! predictor.set_image(&segany::core::image::load_rgb("photo.jpg")?)?;
//! let pred = predictor.predict(&Prompt::new().foreground(500.0, 375.0), true)?;
//! for (mask, score) in pred.masks.iter().zip(&pred.scores) {
//!     println!("area {} score {score:.3}", mask.area());
//! }
//! # Ok(()) }
//! ```
//!
//! The building blocks live in their own crates, re-exported here: [`core`] (errors, devices,
//! checkpoints, images, masks), [`sam_encoder`] and [`sam_decoder`].
#![warn(missing_docs)]

pub mod automatic;
pub mod predictor;
pub mod referring;
pub mod sam;
pub mod semantic;

pub use automatic::{AmgConfig, MaskRecord, OutputMode, SamAutomaticMaskGenerator};
pub use predictor::{ImageEmbedding, Point, PointLabel, Prediction, Prompt, SamPredictor};
pub use referring::{ReferringOptions, ReferringResult, ReferringSegmenter};
pub use sam::{Sam, SamConfig};
pub use segany_core::{BinaryMask, CheckpointSource, Error, Result};

pub use segany_core as core;

/// The README's code, compiled as a doctest so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
pub use segany_sam_decoder as sam_decoder;
pub use segany_sam_encoder as sam_encoder;
