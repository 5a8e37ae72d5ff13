//! Small layers shared by several models.

pub mod bf16_gemm;
mod bilinear_row;
mod channel_norm;
#[cfg(feature = "cuda")]
pub mod cuda;
mod disjoint;
mod elementwise;
mod few_rows;
pub mod fused_attention;
mod gelu;
mod half_softmax;
mod interpolate;
mod layer_norm;
mod linear;
mod matmul;
mod output;
mod qkv_heads;
mod reduce;
mod scratch;
mod simd;
mod softmax;
mod transpose;
mod values;

pub use channel_norm::layer_norm_channels;
pub use elementwise::add;
pub use few_rows::{few_rows_preferred, matmul_few_rows_into};
pub use gelu::{erf, gelu_erf, gelu_erf_in_place, quick_gelu, quick_gelu_in_place};
pub use half_softmax::softmax_last_dim;
pub use interpolate::{
    resize_bilinear, resize_bilinear_crop, resize_bilinear_crop_into, resize_bilinear_crop_map,
};
pub use layer_norm::{
    bias_layer_norm_rows_in_place, layer_norm, layer_norm_2d, layer_norm_row, layer_norm_row_stats,
    layer_norm_stats, residual_layer_norm_rows, LayerNorm, LayerNorm2d,
};
pub use linear::{linear, linear_no_bias, Activation, CpuMatmul, Linear};
pub use matmul::{matmul_acc_into, matmul_acc_into_col_major, matmul_into, matmul_new, MatRef};
pub use output::{grown, min_rows_per_task, zeroed_output};
pub use qkv_heads::qkv_heads;
pub use reduce::{dot, gemv_t, PackedGemv};
pub use scratch::Scratch;
pub use softmax::{
    exp, exp_in_place, rel_softmax_unnormalised, softmax_chunk_unnormalised,
    softmax_columns_in_place, softmax_in_place, softmax_rows_in_place,
};
pub use transpose::{transpose_bytes_into, transpose_into, transpose_last2};
pub use values::{is_cpu_f32, with_f32_values};
