//! Semantic Segment Anything (SSA, close set): label SAM masks with a semantic segmenter's
//! per-pixel classes, and SSA's mIoU evaluation.
//!
//! This module holds the model-free parts: the voting rule ([`vote`]) and the metric
//! ([`MiouAccumulator`]). The semantic branch (SegFormer) is not wired in yet.

pub mod engine;
mod miou;
mod vote;

pub use miou::{ade20k_label, MiouAccumulator, IGNORE_INDEX};
pub use vote::{vote, SemanticVote};
