//! The ReLA / gRefCOCO (GRES) protocol.

use serde::{Deserialize, Serialize};

use super::SampleIou;

/// Accumulator for ReLA's `ReferEvaluator` numbers.
///
/// Each sample has a ground-truth no-target flag (`gt_nt`, empty target), a
/// predicted no-target flag (`pred_nt`) and the I/U of the predicted mask:
///
/// | gt_nt | pred_nt | ReLA name | IoU | I, U added |
/// |---|---|---|---|---|
/// | yes | yes | TP | 1 | 0, 0 |
/// | yes | no  | FN | 0 | 0, U |
/// | no  | yes | FP | 0 (I := 0) | 0, U |
/// | no  | no  | TN | I/U | I, U |
///
/// gIoU is the mean IoU over all samples, cIoU = ΣI/ΣU, N-acc = TP/(TP+FN),
/// T-acc = TN/(TN+FP), Pr@X over targeted samples only.
///
/// ```
/// use segany_data::metrics::{GresMetrics, SampleIou};
/// let mut m = GresMetrics::default();
/// m.push(SampleIou { intersection: 0, union: 0 }, true, true);  // TP: IoU 1
/// m.push(SampleIou { intersection: 0, union: 5 }, true, false); // FN: IoU 0, U 5
/// m.push(SampleIou { intersection: 8, union: 10 }, false, false); // TN: IoU 0.8
/// m.push(SampleIou { intersection: 4, union: 5 }, false, true);  // FP: I := 0
/// let s = m.summary();
/// assert_eq!(s.giou, 1.8 / 4.0);
/// assert_eq!(s.ciou, 8.0 / 20.0);
/// assert_eq!(s.n_acc, Some(0.5));
/// assert_eq!(s.t_acc, Some(0.5));
/// assert_eq!(s.precision, vec![(0.7, 0.5), (0.8, 0.5), (0.9, 0.0)]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct GresMetrics {
    sum_iou: f64,
    sum_i: u64,
    sum_u: u64,
    total: usize,
    targeted_ious: Vec<f64>,
    tp: usize,
    tn: usize,
    fp: usize,
    fn_: usize,
}

/// Final GRES numbers (fractions, not percentages).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GresSummary {
    /// Number of samples.
    pub samples: usize,
    /// Mean IoU over all samples (no-target samples count 1 or 0).
    pub giou: f64,
    /// ΣI / ΣU (0 when ΣU = 0).
    pub ciou: f64,
    /// TP / (TP + FN): no-target samples recognised; `None` without any.
    pub n_acc: Option<f64>,
    /// TN / (TN + FP): targeted samples not rejected; `None` without any.
    pub t_acc: Option<f64>,
    /// Pr@{0.7, 0.8, 0.9} over targeted samples.
    pub precision: Vec<(f64, f64)>,
    /// ReLA's `[TP, TN, FP, FN]` counts.
    pub confusion: [usize; 4],
}

impl GresMetrics {
    /// Adds one sample.
    pub fn push(&mut self, s: SampleIou, gt_nt: bool, pred_nt: bool) {
        self.total += 1;
        if gt_nt {
            if pred_nt {
                self.tp += 1;
                self.sum_iou += 1.0;
            } else {
                self.fn_ += 1;
                self.sum_u += s.union;
            }
            return;
        }
        let i = if pred_nt {
            self.fp += 1;
            0
        } else {
            self.tn += 1;
            s.intersection
        };
        let iou = if s.union == 0 {
            0.0
        } else {
            i as f64 / s.union as f64
        };
        self.sum_iou += iou;
        self.sum_i += i;
        self.sum_u += s.union;
        self.targeted_ious.push(iou);
    }

    /// The ReLA numbers.
    pub fn summary(&self) -> GresSummary {
        let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
        let nt = self.targeted_ious.len();
        GresSummary {
            samples: self.total,
            giou: if self.total == 0 {
                0.0
            } else {
                self.sum_iou / self.total as f64
            },
            ciou: if self.sum_u == 0 {
                0.0
            } else {
                self.sum_i as f64 / self.sum_u as f64
            },
            n_acc: ratio(self.tp, self.tp + self.fn_),
            t_acc: ratio(self.tn, self.tn + self.fp),
            precision: [0.7, 0.8, 0.9]
                .iter()
                .map(|&t| {
                    let c = self.targeted_ious.iter().filter(|&&v| v >= t).count();
                    (t, ratio(c, nt).unwrap_or(0.0))
                })
                .collect(),
            confusion: [self.tp, self.tn, self.fp, self.fn_],
        }
    }
}
