//! Referring-segmentation metrics.
//!
//! - [`ResMetrics`]: per-sample I, U, IoU; mIoU, oIoU (ΣI/ΣU) and Prec@X.
//! - [`GresMetrics`]: the ReLA (gRefCOCO) protocol: gIoU, cIoU, N-acc, T-acc
//!   and Pr@{0.7,0.8,0.9} over targeted samples.
//! - [`SspSamGresMetrics`]: SSP-SAM's own rule for empty targets (a prediction
//!   with fewer than 50 pixels counts as IoU 1).
//! - [`ssp_sam_frame`]: maps an original-resolution mask into SSP-SAM's
//!   512×512 padded evaluation frame.

mod frame;
mod gres;
mod iou;
mod res;
mod ssp_sam;

pub use frame::{ssp_sam_frame, SSP_SAM_FRAME};
pub use gres::{GresMetrics, GresSummary};
pub use iou::{intersection_union, SampleIou};
pub use res::{ResMetrics, ResSummary, LAVT_THRESHOLDS, SSP_SAM_THRESHOLDS};
pub use ssp_sam::{SspSamGresMetrics, SspSamGresSummary, SSP_SAM_EMPTY_PIXELS};
