//! Semantic Segment Anything (SSA, close set): label SAM masks with a semantic segmenter's
//! per-pixel classes, and SSA's mIoU evaluation.
//!
//! [`SemanticSegmenter`] is the semantic branch (SegFormer), [`vote`] SSA's voting rule and
//! [`MiouAccumulator`] the metric of SSA's `evaluation.py`; [`SsaPipeline`] runs the whole
//! close-set pipeline and [`SsaResult`] serialises to SSA's `<name>_semantic.json`.

pub mod engine;
mod evaluate;
mod miou;
mod render;
mod segformer;
mod ssa;
mod vote;

pub use evaluate::{
    evaluate_folder, evaluation_pairs, prediction_from_json, read_label_png, EvalDataset,
    EvalReport,
};
pub use miou::{ade20k_label, MiouAccumulator, IGNORE_INDEX};
pub use render::{labelled_overlay, semantic_image};
pub use segany_segformer::{Config as SegformerConfig, Dataset, ImageProcessor, Variant};
pub use segformer::SemanticSegmenter;
pub use ssa::{label_masks, ssa_amg_config, SsaAnnotation, SsaPipeline, SsaResult};
pub use vote::{vote, SemanticVote};
