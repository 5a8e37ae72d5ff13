//! Strided f32 matrix products on plain slices, for CPU kernels that work block by block.
//!
//! candle's `matmul` needs tensors and parallelises inside each product; a kernel that already
//! runs many small products in parallel (attention over windows and heads) wants them serial,
//! with views into existing buffers (any row and column stride) and a scale folded in. This is
//! a bounds-checked wrapper over the `gemm` crate, the same kernels candle's CPU matmul uses.

use candle_core::{bail, Result};
use rayon::prelude::*;

/// A read-only f32 matrix view: element `(i, j)` is `data[i·row_stride + j·col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A strided view; fails when an element would fall outside `data`.
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self> {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * row_stride + (cols - 1) * col_stride;
            if last >= data.len() {
                bail!(
                    "matrix view {rows}×{cols} (strides {row_stride}, {col_stride}) overruns a \
                     buffer of {} values",
                    data.len()
                )
            }
        }
        Ok(Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    /// A contiguous row-major `rows × cols` view.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// `dst = scale · (a · b)`, where `dst` holds `a.rows()` rows of `b.cols()` values, `dst_stride`
/// apart. `parallel` lets gemm split the product over rayon's threads; kernels that already run
/// products in parallel pass `false`.
pub fn matmul_into(
    dst: &mut [f32],
    dst_stride: usize,
    a: MatRef,
    b: MatRef,
    scale: f32,
    parallel: bool,
) -> Result<()> {
    gemm_into(dst, (dst_stride, 1), a, b, scale, parallel, false)
}

/// [`matmul_into`] that adds to `dst` instead of overwriting it: `dst += scale · (a · b)`.
pub fn matmul_acc_into(
    dst: &mut [f32],
    dst_stride: usize,
    a: MatRef,
    b: MatRef,
    scale: f32,
    parallel: bool,
) -> Result<()> {
    gemm_into(dst, (dst_stride, 1), a, b, scale, parallel, true)
}

/// [`matmul_acc_into`] into a column-major destination: element `(i, j)` of the
/// `a.rows() × b.cols()` product is added to `dst[i + j·col_stride]`. Writing `Cᵀ` this way
/// lets a product with few rows run as one with many (`Cᵀ = Bᵀ·Aᵀ`), which suits the gemm
/// kernels' tall register tiles.
pub fn matmul_acc_into_col_major(
    dst: &mut [f32],
    col_stride: usize,
    a: MatRef,
    b: MatRef,
    scale: f32,
    parallel: bool,
) -> Result<()> {
    gemm_into(dst, (1, col_stride), a, b, scale, parallel, true)
}

/// `dst (+)= scale · a·b` with element `(i, j)` at `dst[i·rs + j·cs]`, where one of the strides
/// is 1 and the other spans the whole row or column (no two elements share a cell).
fn gemm_into(
    dst: &mut [f32],
    (rs, cs): (usize, usize),
    a: MatRef,
    b: MatRef,
    scale: f32,
    parallel: bool,
    accumulate: bool,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k {
        bail!("matmul: {m}×{k} times {}×{n}", b.rows)
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let disjoint = (cs == 1 && rs >= n) || (rs == 1 && cs >= m);
    if !disjoint || (m - 1) * rs + (n - 1) * cs >= dst.len() {
        bail!(
            "matmul: {m}×{n} result (strides {rs}, {cs}) does not fit {} values",
            dst.len()
        )
    }
    if k == 0 {
        if accumulate {
            return Ok(());
        }
        for i in 0..m {
            for j in 0..n {
                dst[i * rs + j * cs] = 0.0;
            }
        }
        return Ok(());
    }
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let blocks = column_blocks(m, k, n, threads);
    if blocks > 1 {
        // Column blocks of a multiple of 16 values, one serial product each: disjoint cells.
        let width = n.div_ceil(blocks).next_multiple_of(16);
        let out = SendPtr(dst.as_mut_ptr());
        (0..n.div_ceil(width)).into_par_iter().for_each(|i| {
            let j0 = i * width;
            let cols = width.min(n - j0);
            let out = &out;
            // SAFETY: `j0 < n`, so the offsets stay inside `dst` and `b`; block `i` writes
            // only columns `j0..j0 + cols` of the checked result, which no other block touches.
            unsafe {
                raw_gemm(
                    (m, cols, k),
                    out.0.add(j0 * cs),
                    (rs, cs),
                    a,
                    b.data.as_ptr().add(j0 * b.col_stride),
                    (b.row_stride, b.col_stride),
                    scale,
                    accumulate,
                    gemm::Parallelism::None,
                )
            }
        });
        return Ok(());
    }
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the views were bounds-checked on construction and `dst` above; gemm reads
    // `a` and `b` only inside those extents and writes only the m×n cells of `dst`.
    unsafe {
        raw_gemm(
            (m, n, k),
            dst.as_mut_ptr(),
            (rs, cs),
            a,
            b.data.as_ptr(),
            (b.row_stride, b.col_stride),
            scale,
            accumulate,
            parallelism,
        )
    }
    Ok(())
}

/// Multiply-adds from which [`gemm_into`] splits a parallel product's columns over the threads
/// itself.
const SPLIT_MIN_WORK: usize = 1 << 18;
/// Narrowest column block of that split.
const SPLIT_MIN_COLS: usize = 64;
/// Most threads for which the split is used. Measured on 2 cores (AMD EPYC, Zen 5) with
/// `benches/compare/sgemm.rs`'s `sgemm_split`, one serial product per column block against the
/// gemm crate's own two-thread split: +2.5% on 2048³, +6–9% on the 77-row products of CLIP's
/// text tower and on the SSP-SAM head's 325×2048·2048×256, within 2% on 325×256·256×2048.
/// Beyond 4 threads, gemm's own scheme (not measured against).
const SPLIT_MAX_THREADS: usize = 4;

/// How many column blocks a product of `m × k` by `k × n` is split into on `threads` threads
/// (1: no split).
fn column_blocks(m: usize, k: usize, n: usize, threads: usize) -> usize {
    if !(2..=SPLIT_MAX_THREADS).contains(&threads) || m * k * n < SPLIT_MIN_WORK {
        return 1;
    }
    (n / SPLIT_MIN_COLS).min(threads).max(1)
}

/// A raw destination pointer shared by the column blocks (each writes its own cells).
struct SendPtr(*mut f32);
// SAFETY: the blocks write disjoint cells (see `gemm_into`).
unsafe impl Sync for SendPtr {}

/// `gemm::gemm` on a `m × k` view `a` and a `k × n` matrix at `b` with strides
/// `(row, col)`, into `dst` with strides `(rs, cs)`.
///
/// # Safety
/// `b` and `dst` must hold every element those extents and strides reach.
#[allow(clippy::too_many_arguments)]
unsafe fn raw_gemm(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    (rs, cs): (usize, usize),
    a: MatRef,
    b: *const f32,
    (b_rs, b_cs): (usize, usize),
    scale: f32,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        cs as isize,
        rs as isize,
        accumulate,
        a.data.as_ptr(),
        a.col_stride as isize,
        a.row_stride as isize,
        b,
        b_cs as isize,
        b_rs as isize,
        if accumulate { 1.0 } else { 0.0 },
        scale,
        false,
        false,
        false,
        parallelism,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_product_matches_naive() -> Result<()> {
        // a: 3×4 read as columns of a 4×3 buffer (transposed view); b: 4×2 with row stride 5.
        let a_buf: Vec<f32> = (0..12).map(|v| v as f32 * 0.5 - 2.0).collect();
        let b_buf: Vec<f32> = (0..20).map(|v| (v % 7) as f32 - 3.0).collect();
        let a = MatRef::row_major(&a_buf, 4, 3)?.t();
        let b = MatRef::new(&b_buf, 4, 2, 5, 1)?;
        let mut dst = vec![f32::NAN; 3 * 3];
        matmul_into(&mut dst, 3, a, b, 0.5, false)?;
        for i in 0..3 {
            for j in 0..2 {
                let s: f32 = (0..4).map(|k| a_buf[k * 3 + i] * b_buf[k * 5 + j]).sum();
                assert!((dst[i * 3 + j] - 0.5 * s).abs() < 1e-5);
            }
            assert!(dst[i * 3 + 2].is_nan(), "padding column written");
        }
        Ok(())
    }

    #[test]
    fn accumulating_product_adds_to_dst() -> Result<()> {
        let a_buf: Vec<f32> = (0..6).map(|v| v as f32 - 2.5).collect();
        let b_buf: Vec<f32> = (0..6).map(|v| (v % 4) as f32 * 0.25).collect();
        let a = MatRef::row_major(&a_buf, 2, 3)?;
        let b = MatRef::row_major(&b_buf, 3, 2)?;
        let mut plain = vec![0f32; 4];
        matmul_into(&mut plain, 2, a, b, 2.0, false)?;
        let start = [1.0f32, -2.0, 0.5, 3.0];
        let mut acc = start.to_vec();
        matmul_acc_into(&mut acc, 2, a, b, 2.0, false)?;
        for ((r, p), s0) in acc.iter().zip(&plain).zip(&start) {
            assert!((r - (p + s0)).abs() < 1e-6, "{r} vs {p} + {s0}");
        }
        // An empty inner dimension adds nothing (and must not clear dst).
        let mut keep = start.to_vec();
        let e = MatRef::row_major(&[], 2, 0)?;
        matmul_acc_into(&mut keep, 2, e, MatRef::row_major(&[], 0, 2)?, 1.0, false)?;
        assert_eq!(keep, start);
        Ok(())
    }

    #[test]
    fn column_major_destination_gets_the_transposed_layout() -> Result<()> {
        let a_buf: Vec<f32> = (0..6).map(|v| v as f32 - 2.5).collect();
        let b_buf: Vec<f32> = (0..12).map(|v| (v % 5) as f32 * 0.5).collect();
        let a = MatRef::row_major(&a_buf, 2, 3)?;
        let b = MatRef::row_major(&b_buf, 3, 4)?;
        let mut plain = vec![0f32; 8];
        matmul_into(&mut plain, 4, a, b, 1.5, false)?;
        // Column stride 3: a 2×4 result in columns of 3 cells (the third one untouched).
        let mut col = vec![1f32; 12];
        matmul_acc_into_col_major(&mut col, 3, a, b, 1.5, false)?;
        for i in 0..2 {
            for j in 0..4 {
                let (got, want) = (col[i + j * 3], plain[i * 4 + j] + 1.0);
                assert!((got - want).abs() < 1e-6, "({i}, {j}): {got} vs {want}");
            }
        }
        assert!((0..4).all(|j| col[2 + j * 3] == 1.0), "padding written");
        // A column stride that would make columns overlap is refused.
        assert!(matmul_acc_into_col_major(&mut col, 1, a, b, 1.0, false).is_err());
        Ok(())
    }

    /// Column blocks on two threads (the split of parallel products) against one serial
    /// product, for a row-major and a column-major destination, overwriting and accumulating,
    /// with a width that leaves a narrow last block.
    #[test]
    fn column_split_matches_serial_product() -> Result<()> {
        let (m, k, n) = (37, 50, 300);
        assert!(
            column_blocks(m, k, n, 2) == 2,
            "the shape must take the split"
        );
        let a_buf: Vec<f32> = (0..m * k)
            .map(|v| ((v * 7) % 23) as f32 * 0.1 - 1.0)
            .collect();
        let b_buf: Vec<f32> = (0..k * n)
            .map(|v| ((v * 5) % 19) as f32 * 0.1 - 0.9)
            .collect();
        let a = MatRef::row_major(&a_buf, m, k)?;
        let b = MatRef::row_major(&b_buf, k, n)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .map_err(candle_core::Error::wrap)?;
        for accumulate in [false, true] {
            let start: Vec<f32> = (0..m * n).map(|v| (v % 3) as f32).collect();
            let (mut serial, mut split) = (start.clone(), start.clone());
            let (mut serial_t, mut split_t) = (start.clone(), start);
            if accumulate {
                matmul_acc_into(&mut serial, n, a, b, 0.5, false)?;
                pool.install(|| matmul_acc_into(&mut split, n, a, b, 0.5, true))?;
            } else {
                matmul_into(&mut serial, n, a, b, 0.5, false)?;
                pool.install(|| matmul_into(&mut split, n, a, b, 0.5, true))?;
            }
            matmul_acc_into_col_major(&mut serial_t, m, a, b, 0.5, false)?;
            pool.install(|| matmul_acc_into_col_major(&mut split_t, m, a, b, 0.5, true))?;
            for (x, y) in serial
                .iter()
                .zip(&split)
                .chain(serial_t.iter().zip(&split_t))
            {
                assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{x} vs {y}");
            }
        }
        Ok(())
    }

    #[test]
    fn rejects_overruns() {
        let buf = [0f32; 6];
        assert!(MatRef::new(&buf, 2, 4, 3, 1).is_err());
        let a = MatRef::row_major(&buf, 2, 3).unwrap();
        let b = MatRef::row_major(&buf, 3, 2).unwrap();
        assert!(matmul_into(&mut [0f32; 3], 2, a, b, 1.0, false).is_err());
        assert!(matmul_into(&mut [0f32; 4], 2, a, b.t(), 1.0, false).is_err());
    }
}
