//! Per-sample results, streamed to JSONL.

use serde::{Deserialize, Serialize};

/// Outcome of one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Scored.
    Ok,
    /// The image file is missing or unreadable.
    MissingImage,
    /// The ground-truth mask could not be built.
    MissingMask,
    /// The segmenter failed or returned a mask of the wrong size.
    SegmenterError,
}

/// One JSONL line of an evaluation run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// Ref id.
    pub ref_id: i64,
    /// Sentence id.
    pub sent_id: i64,
    /// Outcome.
    pub status: Status,
    /// Error text when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Ground truth is empty (gRefCOCO no-target).
    pub gt_empty: bool,
    /// The segmenter's no-target flag.
    pub pred_no_target: bool,
    /// I, U, predicted and ground-truth areas at original resolution.
    pub orig: [u64; 4],
    /// The same in SSP-SAM's 512×512 frame.
    pub frame: [u64; 4],
}
