//! mIoU as SSA's `scripts/evaluation.py` computes it (mmseg `intersect_and_union`, summed over
//! the split, `nanmean` of per-class IoU).

/// Ground-truth value that is ignored.
pub const IGNORE_INDEX: u32 = 255;

/// ADE20K ground truth as SSA reads it: `label - 1` in `u8`, so 0 ("other") becomes 255.
pub fn ade20k_label(raw: u8) -> u32 {
    u32::from(raw.wrapping_sub(1))
}

/// Per-class intersection and union totals over a set of images.
#[derive(Debug, Clone, PartialEq)]
pub struct MiouAccumulator {
    intersect: Vec<u64>,
    pred_area: Vec<u64>,
    label_area: Vec<u64>,
}

impl MiouAccumulator {
    /// Totals for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            intersect: vec![0; num_classes],
            pred_area: vec![0; num_classes],
            label_area: vec![0; num_classes],
        }
    }

    /// Adds one image: pixels whose ground truth is [`IGNORE_INDEX`] are skipped, values outside
    /// `0..num_classes` count in no class (as `torch.histc`).
    pub fn add(&mut self, pred: &[u32], gt: &[u32]) {
        let n = self.intersect.len();
        for (&p, &g) in pred.iter().zip(gt) {
            if g == IGNORE_INDEX {
                continue;
            }
            let (p, g) = (p as usize, g as usize);
            if p < n {
                self.pred_area[p] += 1;
            }
            if g < n {
                self.label_area[g] += 1;
            }
            if p == g && p < n {
                self.intersect[p] += 1;
            }
        }
    }

    /// Per-class IoU (`NaN` for classes absent from both prediction and ground truth).
    pub fn ious(&self) -> Vec<f64> {
        (0..self.intersect.len())
            .map(|c| {
                let union = self.pred_area[c] + self.label_area[c] - self.intersect[c];
                self.intersect[c] as f64 / union as f64
            })
            .collect()
    }

    /// Per-class accuracy `intersection / ground-truth area` (`NaN` for classes absent from
    /// the ground truth).
    pub fn accs(&self) -> Vec<f64> {
        (0..self.intersect.len())
            .map(|c| self.intersect[c] as f64 / self.label_area[c] as f64)
            .collect()
    }

    /// Overall pixel accuracy: all intersections over all ground-truth pixels in a class.
    pub fn aacc(&self) -> f64 {
        self.intersect.iter().sum::<u64>() as f64 / self.label_area.iter().sum::<u64>() as f64
    }

    /// `nanmean` of [`MiouAccumulator::ious`] × 100 (SSA prints it rounded to 2 decimals).
    pub fn miou(&self) -> f64 {
        let v: Vec<f64> = self.ious().into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return f64::NAN;
        }
        100.0 * v.iter().sum::<f64>() / v.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_built_miou() {
        let mut acc = MiouAccumulator::new(3);
        // class 0: pred {0,1}, gt {0}; class 1: pred {2}, gt {1,2}; class 2 absent; pixel 3 ignored.
        acc.add(&[0, 0, 1, 2], &[0, 1, 1, IGNORE_INDEX]);
        let ious = acc.ious();
        assert_eq!(ious[0], 0.5);
        assert_eq!(ious[1], 0.5);
        assert!(ious[2].is_nan());
        assert_eq!(acc.miou(), 50.0);
        assert_eq!(ade20k_label(0), 255);
        assert_eq!(ade20k_label(1), 0);
    }
}
