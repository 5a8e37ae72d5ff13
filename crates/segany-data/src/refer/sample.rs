//! Per-sentence evaluation samples.

use serde::{Deserialize, Serialize};

use super::{Flavor, Refer};
use crate::error::Result;

/// One (ref, sentence) pair — the unit of RES/GRES evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Ref id.
    pub ref_id: i64,
    /// Target annotation ids (one for the RefCOCO family; empty for a
    /// gRefCOCO no-target ref).
    pub ann_ids: Vec<i64>,
    /// Image id.
    pub image_id: i64,
    /// Category id(s) of the ref.
    pub category_ids: Vec<i64>,
    /// The ref's split.
    pub split: String,
    /// Sentence id.
    pub sent_id: i64,
    /// Normalised sentence.
    pub sent: String,
    /// Original sentence.
    pub raw: String,
    /// Target box `[x, y, w, h]` (union box for several targets; `None`
    /// without target).
    pub bbox: Option<[f64; 4]>,
    /// The image's file name.
    pub file_name: String,
}

impl Sample {
    /// Whether the sentence refers to nothing (gRefCOCO `ann_id == [-1]`).
    pub fn no_target(&self) -> bool {
        self.ann_ids.is_empty()
    }
}

impl Refer {
    /// The per-sentence samples of a split (see [`Refer::ref_ids`]), in ref
    /// order then sentence order.
    pub fn samples(&self, split: &str) -> Result<Vec<Sample>> {
        let mut out = Vec::new();
        for id in self.ref_ids(split)? {
            let r = self.get_ref(id)?;
            let mut ann_ids = r.ann_id.to_vec();
            if self.flavor() == Flavor::GRefer && ann_ids == [-1] {
                ann_ids.clear();
            }
            let bbox = if ann_ids.is_empty() {
                None
            } else if self.flavor() == Flavor::GRefer {
                let b = self.union_box_xyxy(id)?.map(|v| v.as_f64());
                Some([b[0], b[1], b[2] - b[0], b[3] - b[1]])
            } else {
                let b = self.ref_box(id)?;
                let g = |i: usize| b.get(i).map(|v| v.as_f64()).unwrap_or(0.0);
                Some([g(0), g(1), g(2), g(3)])
            };
            let file_name = self.image(r.image_id)?.file_name.clone();
            for s in &r.sentences {
                out.push(Sample {
                    ref_id: r.ref_id,
                    ann_ids: ann_ids.clone(),
                    image_id: r.image_id,
                    category_ids: r.category_id.to_vec(),
                    split: r.split.clone(),
                    sent_id: s.sent_id,
                    sent: s.sent.clone(),
                    raw: s.raw.clone(),
                    bbox,
                    file_name: file_name.clone(),
                });
            }
        }
        Ok(out)
    }
}
