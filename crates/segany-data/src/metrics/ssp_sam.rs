//! SSP-SAM's own evaluation rule (`engine.py::evaluate` with
//! `metric/mask_op.py::mask_iou_reftr`).

use serde::{Deserialize, Serialize};

use super::SampleIou;

/// A prediction with fewer pixels than this counts as "empty" when the
/// ground truth is empty.
pub const SSP_SAM_EMPTY_PIXELS: u64 = 50;

/// SSP-SAM's thresholds as its code builds them: `0.5 + 0.05 * i` in Python
/// doubles, then stored in a float32 tensor.
fn thresholds() -> [f32; 9] {
    std::array::from_fn(|i| (0.5 + 0.05 * i as f64) as f32)
}

/// Accumulator reproducing SSP-SAM's evaluation, including its GRES
/// extension. Per sample (IoUs are float32, as in the PyTorch code):
///
/// - empty ground truth: IoU 1 with I = U = 0 when the prediction has fewer
///   than [`SSP_SAM_EMPTY_PIXELS`] pixels, otherwise IoU 0 with I = 0 and U
///   the prediction's area;
/// - otherwise IoU = I / U.
///
/// `G_iou` is the mean IoU, `C_iou` = ΣI/ΣU, `Mask_Pr@t` = share of IoU ≥ t
/// for t in 0.50:0.05:0.90. When some ground truth is empty it also reports
/// SSP-SAM's `No_target_acc` = #(IoU == 1) / #(empty GT) and `target_acc` =
/// #(0 < IoU < 1) / #(non-empty GT) — note that, as in the original, a
/// perfect prediction of a non-empty target counts in the first numerator.
///
/// ```
/// use segany_data::metrics::{SampleIou, SspSamGresMetrics};
/// let mut m = SspSamGresMetrics::default();
/// m.push(SampleIou { intersection: 0, union: 49 }, 0, 49); // empty GT, 49 px: IoU 1
/// m.push(SampleIou { intersection: 0, union: 50 }, 0, 50); // empty GT, 50 px: IoU 0
/// m.push(SampleIou { intersection: 3, union: 4 }, 4, 3); // IoU 0.75
/// let s = m.summary();
/// assert_eq!(s.giou, 1.75 / 3.0);
/// assert_eq!(s.ciou, 3.0 / 54.0);
/// assert_eq!(s.no_target_acc, Some(0.5));
/// assert_eq!(s.target_acc, Some(1.0));
/// ```
#[derive(Clone, Debug, Default)]
pub struct SspSamGresMetrics {
    ious: Vec<f32>,
    sum_i: u64,
    sum_u: u64,
    empty_gt: usize,
    not_empty_gt: usize,
    empty_pred: usize,
    not_empty_pred: usize,
}

/// SSP-SAM's reported numbers (fractions).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SspSamGresSummary {
    /// Number of samples.
    pub samples: usize,
    /// `G_iou(Mean_iou)`.
    pub giou: f64,
    /// `C_iou(Overal_iou)`.
    pub ciou: f64,
    /// `Mask_Pr@0.50` … `Mask_Pr@0.90`.
    pub precision: Vec<(f64, f64)>,
    /// `No_target_acc`, only when some ground truth is empty.
    pub no_target_acc: Option<f64>,
    /// `target_acc`, only when some ground truth is empty (and some is not).
    pub target_acc: Option<f64>,
}

impl SspSamGresMetrics {
    /// Adds a sample from its I/U and the ground-truth and predicted areas.
    pub fn push(&mut self, s: SampleIou, gt_area: u64, pred_area: u64) {
        let (iou, i, u) = if gt_area == 0 {
            self.empty_gt += 1;
            if pred_area < SSP_SAM_EMPTY_PIXELS {
                (1.0f32, 0, 0)
            } else {
                (0.0, 0, s.union)
            }
        } else {
            self.not_empty_gt += 1;
            if s.union == 0 {
                (0.0, 0, 0)
            } else {
                (
                    s.intersection as f32 / s.union as f32,
                    s.intersection,
                    s.union,
                )
            }
        };
        if iou == 1.0 {
            self.empty_pred += 1;
        } else if iou > 0.0 && iou < 1.0 {
            self.not_empty_pred += 1;
        }
        self.ious.push(iou);
        self.sum_i += i;
        self.sum_u += u;
    }

    /// The numbers SSP-SAM prints.
    pub fn summary(&self) -> SspSamGresSummary {
        let n = self.ious.len();
        let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
        SspSamGresSummary {
            samples: n,
            giou: if n == 0 {
                0.0
            } else {
                self.ious.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64
            },
            ciou: if self.sum_u == 0 {
                0.0
            } else {
                self.sum_i as f64 / self.sum_u as f64
            },
            precision: thresholds()
                .iter()
                .map(|&t| {
                    let c = self.ious.iter().filter(|&&v| v >= t).count();
                    (f64::from(t), ratio(c, n).unwrap_or(0.0))
                })
                .collect(),
            no_target_acc: if self.empty_gt > 0 {
                ratio(self.empty_pred, self.empty_gt)
            } else {
                None
            },
            target_acc: if self.empty_gt > 0 {
                ratio(self.not_empty_pred, self.not_empty_gt)
            } else {
                None
            },
        }
    }
}
