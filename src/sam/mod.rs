//! The SAM model: configuration and checkpoint loading.

mod config;
mod model;

pub use config::{EncoderKind, SamConfig};
pub use model::{ImageEncoder, Sam};
