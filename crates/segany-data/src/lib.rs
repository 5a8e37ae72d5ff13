//! RefCOCO-family readers, COCO masks (RLE) and segmentation metrics.
//!
//! - [`mask`]: a bit-exact port of pycocotools' mask API.
//! - [`refer`]: RefCOCO / RefCOCO+ / RefCOCOg / RefCLEF and gRefCOCO readers.
//! - [`sspsam`]: SSP-SAM's prepared format (`anns/<dataset>.json`,
//!   `masks/<dataset>/<ref_id>.npy`) and its `data_process.py`.
//! - [`metrics`]: RES (mIoU, oIoU, Prec@X), GRES (ReLA) and SSP-SAM's rules.
//! - [`eval`]: the [`eval::ReferringSegmenter`] trait, baselines and a
//!   resumable evaluation runner.
pub mod error;
pub mod eval;
pub mod mask;
pub mod metrics;
pub mod npy;
pub mod progress;
pub mod pyjson;
pub mod refer;
pub mod sspsam;

pub use error::{DataError, Result};
