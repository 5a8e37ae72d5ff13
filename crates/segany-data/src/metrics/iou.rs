//! Per-sample intersection and union.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::mask::Mask;

/// Intersection and union pixel counts of one prediction against its ground
/// truth (non-zero pixels are foreground).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleIou {
    /// |P ∩ G|
    pub intersection: u64,
    /// |P ∪ G|
    pub union: u64,
}

impl SampleIou {
    /// I / U, and 0 when the union is empty (LAVT's convention).
    ///
    /// ```
    /// use segany_data::metrics::SampleIou;
    /// assert_eq!(SampleIou { intersection: 1, union: 4 }.iou(), 0.25);
    /// assert_eq!(SampleIou::default().iou(), 0.0);
    /// ```
    pub fn iou(&self) -> f64 {
        if self.union == 0 {
            0.0
        } else {
            self.intersection as f64 / self.union as f64
        }
    }
}

/// Counts I and U of `pred` against `gt`; errors when sizes differ.
///
/// ```
/// use segany_data::mask::Mask;
/// use segany_data::metrics::intersection_union;
/// let p = Mask::from_vec(1, 4, vec![1, 1, 0, 0])?;
/// let g = Mask::from_vec(1, 4, vec![0, 2, 1, 0])?;
/// let s = intersection_union(&p, &g)?;
/// assert_eq!((s.intersection, s.union), (1, 3));
/// # Ok::<(), segany_data::DataError>(())
/// ```
pub fn intersection_union(pred: &Mask, gt: &Mask) -> Result<SampleIou> {
    pred.check_same_size(gt)?;
    let mut s = SampleIou::default();
    for (&p, &g) in pred.as_slice().iter().zip(gt.as_slice()) {
        let (p, g) = (p != 0, g != 0);
        s.intersection += u64::from(p && g);
        s.union += u64::from(p || g);
    }
    Ok(s)
}
