//! RefCOCO-family readers, COCO masks (RLE) and segmentation metrics.
//!
//! - [`mask`]: a bit-exact port of pycocotools' mask API.
//! - [`metrics`]: RES (mIoU, oIoU, Prec@X), GRES (ReLA) and SSP-SAM's rules.
pub mod error;
pub mod mask;
pub mod metrics;

pub use error::{DataError, Result};
