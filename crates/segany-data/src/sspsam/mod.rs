//! SSP-SAM's prepared data: `anns/<dataset>.json` + `masks/<dataset>/<ref_id>.npy`.

mod anns;
mod paths;
mod prepare;

pub use anns::{PreparedAnns, PreparedEntry};
pub use paths::{coco_train2014_path, image_path, mask_path, prepared_name, referit_path};
pub use prepare::{cat_process, prepare, splits_for, PrepareReport};
