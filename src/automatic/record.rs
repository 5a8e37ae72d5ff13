//! Output records in SA-1B's layout.

use segany_data::mask::Rle;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// How [`MaskRecord::segmentation`] holds the mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputMode {
    /// A row-major `H × W` 0/1 mask.
    #[default]
    BinaryMask,
    /// Uncompressed COCO RLE (`{"size": [h, w], "counts": [..]}`).
    UncompressedRle,
    /// Compressed COCO RLE (`{"size": [h, w], "counts": "<string>"}`), as pycocotools.
    CocoRle,
}

impl std::str::FromStr for OutputMode {
    type Err = segany_core::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "binary_mask" => Ok(Self::BinaryMask),
            "uncompressed_rle" => Ok(Self::UncompressedRle),
            "coco_rle" => Ok(Self::CocoRle),
            other => Err(segany_core::Error::InvalidArgument(format!(
                "output mode {other:?}: expected binary_mask, uncompressed_rle or coco_rle"
            ))),
        }
    }
}

/// A mask in the chosen [`OutputMode`].
#[derive(Debug, Clone, PartialEq)]
pub enum Segmentation {
    /// Row-major 0/1 pixels with the image's `(h, w)`.
    Binary {
        /// `(h, w)`.
        size: (usize, usize),
        /// Row-major 0/1 values.
        data: Vec<u8>,
    },
    /// Uncompressed RLE.
    Uncompressed(Rle),
    /// Compressed RLE (the same runs; serialised as pycocotools' string).
    Coco(Rle),
}

impl Segmentation {
    /// The run-length encoding of the mask, whatever the mode.
    pub fn to_rle(&self) -> segany_core::Result<Rle> {
        match self {
            Self::Uncompressed(r) | Self::Coco(r) => Ok(r.clone()),
            Self::Binary { size, data } => {
                let m = segany_data::mask::Mask::from_vec(size.0, size.1, data.clone())
                    .map_err(|e| segany_core::Error::InvalidArgument(e.to_string()))?;
                Rle::encode(&m).map_err(|e| segany_core::Error::InvalidArgument(e.to_string()))
            }
        }
    }
}

impl Serialize for Segmentation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Binary { size, data } => {
                let rows: Vec<&[u8]> = data.chunks(size.1.max(1)).collect();
                rows.serialize(s)
            }
            Self::Uncompressed(r) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("size", &[r.height(), r.width()])?;
                m.serialize_entry("counts", r.counts())?;
                m.end()
            }
            Self::Coco(r) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("size", &[r.height(), r.width()])?;
                m.serialize_entry("counts", &r.to_string())?;
                m.end()
            }
        }
    }
}

/// One generated mask, with the fields of segment-anything's `generate` records (SA-1B).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaskRecord {
    /// The mask.
    pub segmentation: Segmentation,
    /// Foreground pixel count.
    pub area: u64,
    /// Box `[x, y, w, h]` (inclusive max corner minus min corner, as segment-anything).
    pub bbox: [i64; 4],
    /// The model's predicted IoU.
    pub predicted_iou: f64,
    /// The prompt point `[[x, y]]` in image pixels.
    pub point_coords: [[f64; 2]; 1],
    /// Stability score.
    pub stability_score: f64,
    /// The crop the mask came from, `[x, y, w, h]`.
    pub crop_box: [i64; 4],
}
