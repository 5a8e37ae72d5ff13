//! SSA's semantic voting (`scripts/pipeline.py::semantic_segment_anything_inference`).

use segany_core::{Error, Result};
use segany_data::mask::{Mask, Rle};

/// Result of [`vote`].
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticVote {
    /// Mask indices by decreasing area (stable: equal areas keep their input order); SSA writes
    /// its annotations in this order.
    pub order: Vec<usize>,
    /// The class of each input mask (input order).
    pub labels: Vec<u32>,
    /// Row-major `h × w` class map after voting.
    pub semantic_mask: Vec<u32>,
    /// One COCO RLE per class present in `semantic_mask`, by increasing class id.
    pub class_rles: Vec<(u32, Rle)>,
}

/// SSA's vote: masks sorted by area (largest first); each takes the most frequent class of the
/// segmenter's map `class_map` (row-major `h × w`) under its pixels and writes it there, so
/// smaller masks overwrite larger ones; uncovered pixels keep the segmenter's class.
///
/// Ties in the most frequent class go to the smallest class id (SSA uses `torch.topk(1)` on a
/// `bincount`, whose tie order is unspecified). An empty mask takes class 0 and writes nothing.
///
/// ```
/// use segany::semantic::vote;
/// use segany_data::mask::{Mask, Rle};
/// let big = Rle::encode(&Mask::from_vec(1, 4, vec![1, 1, 1, 0]).unwrap()).unwrap();
/// let small = Rle::encode(&Mask::from_vec(1, 4, vec![0, 0, 1, 0]).unwrap()).unwrap();
/// let v = vote(&[small, big], &[5, 5, 7, 9], 1, 4).unwrap();
/// assert_eq!(v.order, vec![1, 0]);
/// assert_eq!(v.labels, vec![7, 5]);
/// assert_eq!(v.semantic_mask, vec![5, 5, 7, 9]);
/// ```
pub fn vote(masks: &[Rle], class_map: &[u32], h: usize, w: usize) -> Result<SemanticVote> {
    if class_map.len() != h * w {
        return Err(Error::InvalidArgument(format!(
            "class map has {} values, expected {h}x{w}",
            class_map.len()
        )));
    }
    let mut order: Vec<usize> = (0..masks.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(masks[i].area()));
    let mut semantic = class_map.to_vec();
    let mut labels = vec![0u32; masks.len()];
    for &i in &order {
        let r = &masks[i];
        if (r.height(), r.width()) != (h, w) {
            return Err(Error::InvalidArgument(format!(
                "mask {i} is {}x{}, the class map {h}x{w}",
                r.height(),
                r.width()
            )));
        }
        let m = r
            .decode()
            .map_err(|e| Error::InvalidArgument(format!("mask {i}: {e}")))?;
        let px = m.as_slice();
        let mut counts = std::collections::BTreeMap::<u32, u64>::new();
        for (p, &c) in px.iter().zip(class_map) {
            if *p != 0 {
                *counts.entry(c).or_default() += 1;
            }
        }
        let Some(label) = counts
            .iter()
            .fold(None::<(u32, u64)>, |best, (&c, &n)| match best {
                Some((_, bn)) if bn >= n => best,
                _ => Some((c, n)),
            })
            .map(|(c, _)| c)
        else {
            continue;
        };
        labels[i] = label;
        for (s, p) in semantic.iter_mut().zip(px) {
            if *p != 0 {
                *s = label;
            }
        }
    }
    let classes: std::collections::BTreeSet<u32> = semantic.iter().copied().collect();
    let class_rles = classes
        .into_iter()
        .map(|c| {
            let m = Mask::from_vec(h, w, semantic.iter().map(|&s| u8::from(s == c)).collect())
                .and_then(|m| Rle::encode(&m))
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
            Ok((c, m))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SemanticVote {
        order,
        labels,
        semantic_mask: semantic,
        class_rles,
    })
}
