//! Small layers shared by several models.

mod layer_norm;

pub use layer_norm::{layer_norm, layer_norm_2d, LayerNorm, LayerNorm2d};
