//! A bit-exact port of the COCO mask API (`pycocotools`' `maskApi.c`).
//!
//! Run-length encodings ([`Rle`]) are column-major, start with a run of zeros
//! and alternate; binary masks ([`Mask`]) are row-major `H×W` bytes. Every
//! operation reproduces the C code's integer and floating-point arithmetic, so
//! counts, compressed strings, areas, boxes and IoUs are identical to
//! `pycocotools.mask`.
//!
//! ```
//! use segany_data::mask::{Mask, Rle};
//!
//! // The square with corners (0,0) and (2,2) in a 5×4 (h×w) image covers
//! // pixels 0..2 × 0..2 (values from pycocotools).
//! let rle = Rle::from_polygon(&[0.0, 0.0, 2.0, 0.0, 2.0, 2.0, 0.0, 2.0], 5, 4)?;
//! assert_eq!(rle.area(), 4);
//! assert_eq!(rle.to_bbox(), [0.0, 0.0, 2.0, 2.0]);
//! let s = rle.to_string();
//! assert_eq!(Rle::from_string(&s, 5, 4)?, rle);
//! let m: Mask = rle.decode()?;
//! assert_eq!(m.get(1, 1), 1);
//! # Ok::<(), segany_data::DataError>(())
//! ```

mod bbox;
mod binary;
mod codec;
mod iou;
mod merge;
mod poly;
mod rle;

pub use bbox::bbox_iou;
pub use binary::Mask;
pub use iou::rle_iou;
pub use merge::merge;
pub use poly::{polygons_to_rles, MAX_POLYGON_STEPS};
pub use rle::{Rle, MAX_PIXELS};
