//! COCO-style `instances.json` (the three keys `refer.py` reads).

use std::path::Path;

use serde::Deserialize;

use crate::error::{DataError, Result};
use crate::mask::{polygons_to_rles, Mask, Rle};
use crate::pyjson::PyNum;

/// `instances.json`: images, annotations and categories.
#[derive(Clone, Debug, Deserialize)]
pub struct Instances {
    /// `images[]`
    pub images: Vec<ImageInfo>,
    /// `annotations[]`
    pub annotations: Vec<Annotation>,
    /// `categories[]`
    pub categories: Vec<Category>,
}

/// One `images[]` entry.
#[derive(Clone, Debug, Deserialize)]
pub struct ImageInfo {
    /// Image id.
    pub id: i64,
    /// File name relative to the image directory.
    pub file_name: String,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

/// One `annotations[]` entry.
#[derive(Clone, Debug, Deserialize)]
pub struct Annotation {
    /// Annotation id.
    pub id: i64,
    /// Image id.
    pub image_id: i64,
    /// COCO category id.
    pub category_id: i64,
    /// Polygons or RLE.
    pub segmentation: Segmentation,
    /// `[x, y, w, h]`, numbers kept as Python `int`/`float`.
    pub bbox: Vec<PyNum>,
    /// Crowd flag (0 when absent).
    #[serde(default)]
    pub iscrowd: i64,
}

/// One `categories[]` entry.
#[derive(Clone, Debug, Deserialize)]
pub struct Category {
    /// Category id.
    pub id: i64,
    /// Name.
    pub name: String,
}

/// An annotation's `segmentation`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Segmentation {
    /// COCO polygons `[[x0, y0, x1, y1, …], …]` (RefCOCO family).
    Polygons(Vec<Vec<f64>>),
    /// A list of RLE objects (RefCLEF).
    Rles(Vec<RleJson>),
    /// A single RLE object.
    Rle(RleJson),
}

/// A COCO RLE object `{"size": [h, w], "counts": …}`.
#[derive(Clone, Debug, Deserialize)]
pub struct RleJson {
    /// `[h, w]`
    pub size: [usize; 2],
    /// Compressed string or raw counts.
    pub counts: RleCounts,
}

/// RLE counts: compressed string or raw list.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RleCounts {
    /// Compressed (`rleToString`).
    String(String),
    /// Uncompressed.
    Counts(Vec<u32>),
}

impl RleJson {
    /// The [`Rle`] this object describes.
    pub fn to_rle(&self) -> Result<Rle> {
        let [h, w] = self.size;
        match &self.counts {
            RleCounts::String(s) => Rle::from_string(s, h, w),
            RleCounts::Counts(c) => Rle::new(h, w, c.clone()),
        }
    }
}

impl Segmentation {
    /// The RLEs `refer.getMask` decodes: `frPyObjects(polygons, h, w)` or
    /// the RLE objects as they are.
    pub fn to_rles(&self, h: usize, w: usize) -> Result<Vec<Rle>> {
        match self {
            Segmentation::Polygons(p) => polygons_to_rles(p, h, w),
            Segmentation::Rles(r) => r.iter().map(RleJson::to_rle).collect(),
            Segmentation::Rle(r) => Ok(vec![r.to_rle()?]),
        }
    }

    /// `refer.getMask`: the `uint8` sum of the decoded masks (overlaps give
    /// 2, wrapping like numpy's `astype(np.uint8)`). Polygons are drawn on
    /// an `h × w` image; RLE objects use their own `size`.
    pub fn to_mask(&self, h: usize, w: usize) -> Result<Mask> {
        let rles = self.to_rles(h, w)?;
        let mut it = rles.iter();
        let Some(first) = it.next() else {
            return Err(DataError::Rle("empty segmentation".into()));
        };
        let mut sum = first.decode()?;
        for r in it {
            sum.wrapping_add_assign(&r.decode()?)?;
        }
        Ok(sum)
    }
}

impl Instances {
    /// Reads `instances.json`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        serde_json::from_slice(&text).map_err(|e| DataError::Json {
            path: path.into(),
            source: e,
        })
    }
}
