//! The SAM model: configuration and checkpoint loading.

mod config;
mod model;

pub use config::SamConfig;
pub use model::Sam;
