//! A fast transpose of the last two dimensions into a contiguous tensor.
//!
//! candle copies a transposed view element by element through a strided index; for the
//! `(B, C, H·W) → (B, H·W, C)` reshuffles of image features that costs milliseconds per call. On
//! the CPU this op transposes cache-sized tiles in parallel; other devices use the plain
//! `transpose(..).contiguous()`.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

const TILE: usize = 32;

struct TransposeLast2;

/// Writes the transpose of the row-major `rows × cols` matrix `src` into `dst` (`cols × rows`,
/// row-major), tile by tile so that both sides are read and written in cache-sized pieces.
/// Both slices must hold `rows · cols` values.
pub fn transpose_into<T: Copy>(src: &[T], dst: &mut [T], rows: usize, cols: usize) {
    transpose_strided_into(src, cols, dst, rows, cols);
}

/// [`transpose_into`] of a `rows × cols` matrix whose rows start `stride` values apart in
/// `src` (a view into wider rows, such as one head's keys in a fused `qkv` projection).
pub(crate) fn transpose_strided_into<T: Copy>(
    src: &[T],
    stride: usize,
    dst: &mut [T],
    rows: usize,
    cols: usize,
) {
    debug_assert!(
        (rows == 0 || src.len() >= (rows - 1) * stride + cols) && dst.len() >= rows * cols
    );
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[c * rows + r] = src[r * stride + c];
                }
            }
        }
    }
}

fn transpose_batch<T: WithDType>(src: &[T], batches: usize, rows: usize, cols: usize) -> Vec<T> {
    let mut dst = src.to_vec();
    let plane = rows * cols;
    if plane == 0 {
        return dst;
    }
    dst.par_chunks_mut(plane)
        .zip(src.par_chunks(plane))
        .take(batches)
        .for_each(|(d, s)| transpose_into(s, d, rows, cols));
    dst
}

impl CustomOp1 for TransposeLast2 {
    fn name(&self) -> &'static str {
        "transpose-last2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = l.dims();
        if dims.len() < 2 {
            candle_core::bail!("transpose-last2 needs at least 2 dimensions, got {dims:?}")
        }
        let (rows, cols) = (dims[dims.len() - 2], dims[dims.len() - 1]);
        let batches: usize = dims[..dims.len() - 2].iter().product();
        let (a, b) = l.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("transpose-last2: input must be contiguous".into())
        })?;
        let mut out_dims = dims.to_vec();
        let n = out_dims.len();
        out_dims.swap(n - 2, n - 1);
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32(transpose_batch(&v[a..b], batches, rows, cols)),
            CpuStorage::F16(v) => CpuStorage::F16(transpose_batch(&v[a..b], batches, rows, cols)),
            CpuStorage::BF16(v) => CpuStorage::BF16(transpose_batch(&v[a..b], batches, rows, cols)),
            CpuStorage::F64(v) => CpuStorage::F64(transpose_batch(&v[a..b], batches, rows, cols)),
            _ => candle_core::bail!("transpose-last2: unsupported dtype"),
        };
        Ok((out, Shape::from_dims(&out_dims)))
    }
}

/// `x.transpose(D::Minus2, D::Minus1).contiguous()`, fast on the CPU.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::arange(0f32, 6., &Device::Cpu).unwrap().reshape((1, 2, 3)).unwrap();
/// let y = segany_core::nn::transpose_last2(&x).unwrap();
/// assert_eq!(y.to_vec3::<f32>().unwrap(), vec![vec![vec![0., 3.], vec![1., 4.], vec![2., 5.]]]);
/// ```
pub fn transpose_last2(x: &Tensor) -> Result<Tensor> {
    let n = x.rank();
    if x.device().is_cpu() && n >= 2 {
        x.contiguous()?.apply_op1_no_bwd(&TransposeLast2)
    } else {
        x.transpose(n.saturating_sub(2), n.saturating_sub(1))?
            .contiguous()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A view of 70 × 45 values inside rows of 50 (the tiles' edges cut both ways), against
    /// the transpose by definition; the unstrided form is the same with the stride = width.
    #[test]
    fn strided_transpose_matches_definition() {
        let (rows, cols, stride) = (70usize, 45usize, 50usize);
        let src: Vec<f32> = (0..rows * stride).map(|i| i as f32).collect();
        let mut dst = vec![f32::NAN; rows * cols];
        transpose_strided_into(&src, stride, &mut dst, rows, cols);
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(dst[c * rows + r], src[r * stride + c], "({r}, {c})");
            }
        }
        let dense: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let mut t = vec![f32::NAN; rows * cols];
        transpose_into(&dense, &mut t, rows, cols);
        assert!((0..rows * cols).all(|i| t[(i % cols) * rows + i / cols] == dense[i]));
    }
}
