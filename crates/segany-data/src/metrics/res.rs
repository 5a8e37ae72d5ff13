//! Standard RES metrics: mIoU, oIoU and Prec@X.

use serde::{Deserialize, Serialize};

use super::SampleIou;

/// Prec@X thresholds used by LAVT, DFAM and most RES papers.
pub const LAVT_THRESHOLDS: [f64; 5] = [0.5, 0.6, 0.7, 0.8, 0.9];

/// SSP-SAM's thresholds `0.5 + 0.05 i`, `i = 0..9` (0.50:0.05:0.90).
pub const SSP_SAM_THRESHOLDS: [f64; 9] = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9];

/// Accumulates per-sample I/U for mIoU, oIoU and precision at thresholds.
///
/// ```
/// use segany_data::metrics::{ResMetrics, SampleIou};
/// let mut m = ResMetrics::default();
/// m.push(SampleIou { intersection: 3, union: 4 }); // IoU 0.75
/// m.push(SampleIou { intersection: 1, union: 4 }); // IoU 0.25
/// let s = m.summary(&[0.5, 0.8]);
/// assert_eq!(s.miou, 0.5);
/// assert_eq!(s.oiou, 0.5); // 4 / 8
/// assert_eq!(s.precision, vec![(0.5, 0.5), (0.8, 0.0)]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ResMetrics {
    ious: Vec<f64>,
    sum_i: u64,
    sum_u: u64,
}

/// Final RES numbers (fractions in 0..=1, not percentages).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResSummary {
    /// Number of samples.
    pub samples: usize,
    /// Mean of the per-sample IoUs.
    pub miou: f64,
    /// Overall IoU, ΣI / ΣU (0 when ΣU = 0).
    pub oiou: f64,
    /// `(threshold, fraction of samples with IoU >= threshold)`.
    pub precision: Vec<(f64, f64)>,
}

impl ResMetrics {
    /// Adds a sample scored with [`SampleIou::iou`].
    pub fn push(&mut self, s: SampleIou) {
        self.push_with_iou(s, s.iou());
    }

    /// Adds a sample with an explicitly chosen IoU (for protocols that
    /// override it, such as SSP-SAM's empty-target rule).
    pub fn push_with_iou(&mut self, s: SampleIou, iou: f64) {
        self.ious.push(iou);
        self.sum_i += s.intersection;
        self.sum_u += s.union;
    }

    /// Number of samples so far.
    pub fn len(&self) -> usize {
        self.ious.len()
    }

    /// Whether no sample was added.
    pub fn is_empty(&self) -> bool {
        self.ious.is_empty()
    }

    /// mIoU, oIoU and precision at each of `thresholds` (IoU >= t).
    /// All values are 0 for an empty set.
    pub fn summary(&self, thresholds: &[f64]) -> ResSummary {
        let n = self.ious.len();
        let frac = |c: usize| if n == 0 { 0.0 } else { c as f64 / n as f64 };
        ResSummary {
            samples: n,
            miou: if n == 0 {
                0.0
            } else {
                self.ious.iter().sum::<f64>() / n as f64
            },
            oiou: if self.sum_u == 0 {
                0.0
            } else {
                self.sum_i as f64 / self.sum_u as f64
            },
            precision: thresholds
                .iter()
                .map(|&t| (t, frac(self.ious.iter().filter(|&&v| v >= t).count())))
                .collect(),
        }
    }
}
