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
pub fn transpose_into<T: Copy + 'static>(src: &[T], dst: &mut [T], rows: usize, cols: usize) {
    transpose_strided_into(src, cols, dst, rows, cols);
}

/// [`transpose_into`] of a `rows × cols` matrix whose rows start `stride` values apart in
/// `src` (a view into wider rows, such as one head's keys in a fused `qkv` projection).
///
/// `f32` on CPUs with AVX goes by 8 × 8 blocks in registers ([`avx::block_8x8`]): a block
/// costs eight loads, 24 shuffles and eight stores instead of 64 scalar moves.
pub(crate) fn transpose_strided_into<T: Copy + 'static>(
    src: &[T],
    stride: usize,
    dst: &mut [T],
    rows: usize,
    cols: usize,
) {
    assert!(
        (rows == 0 || cols == 0 || src.len() >= (rows - 1) * stride + cols)
            && dst.len() >= rows * cols,
        "transpose: {rows} × {cols} (rows {stride} apart) from {} values into {}",
        src.len(),
        dst.len()
    );
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
        && std::arch::is_x86_feature_detected!("avx")
    {
        // SAFETY: `T` is `f32` (same type id), so the slices may be read as `f32`; the CPU
        // has AVX (checked); the extents were checked above.
        unsafe {
            let s = std::slice::from_raw_parts(src.as_ptr().cast::<f32>(), src.len());
            let d = std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<f32>(), dst.len());
            avx::transpose(s, stride, d, rows, cols);
        }
        return;
    }
    transpose_scalar(src, stride, dst, rows, cols);
}

/// [`transpose_strided_into`] element by element, tile by tile.
fn transpose_scalar<T: Copy>(src: &[T], stride: usize, dst: &mut [T], rows: usize, cols: usize) {
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

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::TILE;
    use std::arch::x86_64::*;

    /// [`super::transpose_strided_into`] for `f32`: 8 × 8 blocks inside each tile, the
    /// edges element by element.
    ///
    /// # Safety
    /// The CPU must have AVX; `src` must hold `rows` rows of `cols` values `stride` apart and
    /// `dst` `rows · cols` values.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn transpose(
        src: &[f32],
        stride: usize,
        dst: &mut [f32],
        rows: usize,
        cols: usize,
    ) {
        let (rb, cb) = (rows / 8 * 8, cols / 8 * 8);
        for r0 in (0..rb).step_by(TILE) {
            for c0 in (0..cb).step_by(TILE) {
                for r in (r0..(r0 + TILE).min(rb)).step_by(8) {
                    for c in (c0..(c0 + TILE).min(cb)).step_by(8) {
                        // SAFETY: rows r..r + 8 and columns c..c + 8 lie inside the checked
                        // extents (r + 8 ≤ rows, c + 8 ≤ cols).
                        unsafe {
                            block_8x8(
                                src.as_ptr().add(r * stride + c),
                                stride,
                                dst.as_mut_ptr().add(c * rows + r),
                                rows,
                            )
                        }
                    }
                }
            }
        }
        super::transpose_edges(src, stride, dst, (rows, cols), (rb, cb));
    }

    /// The 8 × 8 block at `src` (rows `sld` apart) transposed to `dst` (rows `dld` apart):
    /// pairs of rows interleaved, then pairs of pairs, then the 128-bit halves exchanged.
    ///
    /// # Safety
    /// The CPU must have AVX; both blocks must be readable / writable.
    #[target_feature(enable = "avx")]
    #[inline]
    unsafe fn block_8x8(src: *const f32, sld: usize, dst: *mut f32, dld: usize) {
        // SAFETY: the caller guarantees eight rows of eight values at both ends.
        unsafe {
            let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * sld)));
            // t[2i], t[2i + 1]: rows 2i and 2i + 1 interleaved, low and high pairs per lane.
            let t: [__m256; 8] = std::array::from_fn(|i| {
                let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
                if i % 2 == 0 {
                    _mm256_unpacklo_ps(a, b)
                } else {
                    _mm256_unpackhi_ps(a, b)
                }
            });
            // u[j] for rows 0-3 (j < 4) and 4-7: columns j % 4 | j % 4 + 4 of four rows.
            let u: [__m256; 8] = std::array::from_fn(|j| {
                let base = j / 4 * 4;
                let (a, b) = (t[base + (j % 4) / 2], t[base + 2 + (j % 4) / 2]);
                if j % 2 == 0 {
                    _mm256_shuffle_ps::<0x44>(a, b)
                } else {
                    _mm256_shuffle_ps::<0xEE>(a, b)
                }
            });
            for j in 0..4 {
                _mm256_storeu_ps(
                    dst.add(j * dld),
                    _mm256_permute2f128_ps::<0x20>(u[j], u[j + 4]),
                );
                _mm256_storeu_ps(
                    dst.add((j + 4) * dld),
                    _mm256_permute2f128_ps::<0x31>(u[j], u[j + 4]),
                );
            }
        }
    }
}

/// [`transpose_into`] for bytes (binary masks), eight rows at a time: each 8 × 8 block is
/// loaded as eight words and transposed inside them in three rounds of block swaps, so a
/// mask moves a word, not a byte, per load and store. The edges that do not fill a block go
/// byte by byte. Both slices must hold `rows · cols` bytes (it panics otherwise, as
/// [`transpose_into`] does).
///
/// ```
/// use segany_core::nn::transpose_bytes_into;
/// let src: Vec<u8> = (0..27).collect(); // 3 × 9
/// let mut dst = vec![0u8; 27];
/// transpose_bytes_into(&src, &mut dst, 3, 9);
/// assert_eq!(&dst[..6], &[0, 9, 18, 1, 10, 19]);
/// ```
pub fn transpose_bytes_into(src: &[u8], dst: &mut [u8], rows: usize, cols: usize) {
    let (rb, cb) = (rows / 8 * 8, cols / 8 * 8);
    for c0 in (0..cb).step_by(8) {
        for r0 in (0..rb).step_by(8) {
            let mut w = [0u64; 8];
            for (i, w) in w.iter_mut().enumerate() {
                let at = (r0 + i) * cols + c0;
                let mut b = [0u8; 8];
                b.copy_from_slice(&src[at..at + 8]);
                *w = u64::from_le_bytes(b);
            }
            transpose_8x8(&mut w);
            for (j, w) in w.iter().enumerate() {
                let at = (c0 + j) * rows + r0;
                dst[at..at + 8].copy_from_slice(&w.to_le_bytes());
            }
        }
    }
    transpose_edges(src, cols, dst, (rows, cols), (rb, cb));
}

/// The values a blocked transpose of a `rows × cols` matrix (rows `stride` apart in `src`)
/// left out, element by element: the right edge past column `cb` (all rows), then the
/// bottom edge past row `rb` (the blocked columns).
fn transpose_edges<T: Copy>(
    src: &[T],
    stride: usize,
    dst: &mut [T],
    (rows, cols): (usize, usize),
    (rb, cb): (usize, usize),
) {
    for r in 0..rows {
        for c in cb..cols {
            dst[c * rows + r] = src[r * stride + c];
        }
    }
    for r in rb..rows {
        for c in 0..cb {
            dst[c * rows + r] = src[r * stride + c];
        }
    }
}

/// Eight words of eight bytes each (rows of an 8 × 8 byte matrix, byte `k` of word `i` the
/// element `(i, k)`) transposed in place: 4 × 4 blocks swapped, then 2 × 2, then bytes.
#[inline(always)]
fn transpose_8x8(w: &mut [u64; 8]) {
    const LO32: u64 = 0x0000_0000_FFFF_FFFF;
    const M16: u64 = 0x0000_FFFF_0000_FFFF;
    const M8: u64 = 0x00FF_00FF_00FF_00FF;
    for i in 0..4 {
        let (a, b) = (w[i], w[i + 4]);
        w[i] = (a & LO32) | (b << 32);
        w[i + 4] = (a >> 32) | (b & !LO32);
    }
    for i in [0, 1, 4, 5] {
        let (a, b) = (w[i], w[i + 2]);
        w[i] = (a & M16) | ((b & M16) << 16);
        w[i + 2] = ((a >> 16) & M16) | (b & !M16);
    }
    for i in [0, 2, 4, 6] {
        let (a, b) = (w[i], w[i + 1]);
        w[i] = (a & M8) | ((b & M8) << 8);
        w[i + 1] = ((a >> 8) & M8) | (b & !M8);
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

    /// `f32` by 8 × 8 register blocks (where the CPU has AVX) equals the scalar transpose,
    /// bit for bit, for sides below, at and around multiples of 8 and of the 32-value tiles,
    /// with and without a row stride wider than the rows.
    #[test]
    fn f32_blocks_match_the_scalar_transpose() {
        for (rows, cols) in [
            (8, 8),
            (7, 9),
            (16, 40),
            (33, 65),
            (118, 256),
            (1, 70),
            (70, 1),
        ] {
            for stride in [cols, cols + 3] {
                let src: Vec<f32> = (0..rows * stride).map(|i| i as f32 * 0.5 - 7.0).collect();
                let (mut fast, mut want) = (vec![f32::NAN; rows * cols], vec![0f32; rows * cols]);
                transpose_strided_into(&src, stride, &mut fast, rows, cols);
                transpose_scalar(&src, stride, &mut want, rows, cols);
                assert_eq!(fast, want, "{rows} × {cols}, rows {stride} apart");
            }
        }
    }

    /// Bytes by blocks of 8 equal the generic transpose, for sides that are multiples of 8,
    /// that are not, and that are smaller than a block.
    #[test]
    fn byte_transpose_matches_the_generic_one() {
        for (rows, cols) in [(16, 24), (37, 45), (64, 3), (5, 7), (8, 8), (1, 17)] {
            let src: Vec<u8> = (0..rows * cols).map(|i| (i * 7 % 251) as u8).collect();
            let (mut fast, mut want) = (vec![0u8; rows * cols], vec![1u8; rows * cols]);
            transpose_bytes_into(&src, &mut fast, rows, cols);
            transpose_into(&src, &mut want, rows, cols);
            assert_eq!(fast, want, "{rows} × {cols}");
        }
    }
}
