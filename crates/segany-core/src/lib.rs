//! Shared foundations of the segany crates: the error type, device and dtype selection,
//! checkpoint sources (Hugging Face hub, directory, file) with validating loading and
//! per-layout rename maps, image loading with exact reference pre-processing, small
//! neural-network layers shared by several models, and mask types.
#![warn(missing_docs)]

pub mod checkpoint;
mod device;
mod error;
pub mod image;
pub mod mask;
pub mod nn;
pub mod rename;
pub mod viz;

pub use checkpoint::{CheckpointSource, ResolvedCheckpoint, TensorStore};
pub use device::{best_device, device_from_env, parse_cpu_matmul, parse_device, parse_dtype};
pub use error::{Error, Result, ShapeMismatch};
pub use mask::BinaryMask;
