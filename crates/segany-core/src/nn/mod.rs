//! Small layers shared by several models.

mod interpolate;
mod layer_norm;
mod matmul;
mod transpose;

pub use interpolate::resize_bilinear;
pub use layer_norm::{layer_norm, layer_norm_2d, LayerNorm, LayerNorm2d};
pub use matmul::{matmul_into, MatRef};
pub use transpose::transpose_last2;
