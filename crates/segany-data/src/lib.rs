//! RefCOCO-family readers, COCO masks (RLE) and segmentation metrics.
//!
//! - [`mask`]: a bit-exact port of pycocotools' mask API.
pub mod error;
pub mod mask;

pub use error::{DataError, Result};
