//! Evaluation: the [`ReferringSegmenter`] trait, baselines and a resumable
//! runner that streams per-sample results to JSONL.

mod record;
mod runner;
mod segmenter;

pub use record::{SampleRecord, Status};
pub use runner::{evaluate, EvalConfig, EvalReport};
pub use segmenter::{GroundTruthBox, Prediction, ReferringSegmenter, SegmenterInput, WholeImage};
