//! Checkpoints: where they come from ([`CheckpointSource`]), reading safetensors archives into a
//! [`TensorStore`], and building models from a store with every missing, mis-shaped or
//! unexpected tensor reported by name.

mod source;
mod store;
mod tracker;

pub use source::{CheckpointSource, ResolvedCheckpoint};
pub use store::TensorStore;
pub use tracker::CheckedVarBuilder;
