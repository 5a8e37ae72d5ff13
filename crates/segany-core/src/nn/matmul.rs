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
    strides: (usize, usize),
    a: MatRef,
    b: MatRef,
    scale: f32,
    parallel: bool,
    accumulate: bool,
) -> Result<()> {
    // SAFETY: `dst` is `dst.len()` initialised values that this call borrows exclusively.
    unsafe {
        gemm_ptr(
            (dst.as_mut_ptr(), dst.len()),
            strides,
            a,
            b,
            scale,
            parallel,
            accumulate,
        )
    }
}

/// `scale · (a · b)` as a new row-major vector of `a.rows() × b.cols()` values, written by the
/// product alone: no zero-fill before it. (A fresh output that the allocator hands back from
/// freed memory is otherwise cleared by `calloc` on the calling thread while the other threads
/// wait: 2% of the SSP-SAM head's CPU time, and its 224 variant 5% faster without it.)
///
/// ```
/// use segany_core::nn::{matmul_new, MatRef};
/// let a = [1f32, 2.0, 3.0, 4.0]; // 2 × 2
/// let b = [1f32, 0.0, 1.0, 0.0, 1.0, 1.0]; // 2 × 3
/// let c = matmul_new(MatRef::row_major(&a, 2, 2)?, MatRef::row_major(&b, 2, 3)?, 0.5, true)?;
/// assert_eq!(c, [0.5, 1.0, 1.5, 1.5, 2.0, 3.5]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn matmul_new(a: MatRef, b: MatRef, scale: f32, parallel: bool) -> Result<Vec<f32>> {
    let (m, n) = (a.rows, b.cols);
    let Some(len) = m.checked_mul(n) else {
        bail!("matmul: {m}×{n} result is too large")
    };
    let mut out: Vec<f32> = Vec::with_capacity(len);
    super::output::advise_huge_pages(out.as_mut_ptr(), len);
    // SAFETY: the capacity holds `len` values; `gemm_ptr` writes every cell of the `m × n`
    // row-major result (`accumulate` false: gemm stores into the destination without reading
    // it, and a product with `k = 0` is written as zeros) or fails before writing any, so
    // `set_len` only covers written values.
    unsafe {
        gemm_ptr(
            (out.as_mut_ptr(), len),
            (n, 1),
            a,
            b,
            scale,
            parallel,
            false,
        )?;
        out.set_len(len);
    }
    Ok(out)
}

/// [`gemm_into`] on a raw destination of `dst.1` values at `dst.0`.
///
/// # Safety
/// `dst.0` must be valid for writes of `dst.1` values that nothing else accesses during the
/// call; with `accumulate` they must also be initialised (without it they are only written).
unsafe fn gemm_ptr(
    (dst, dst_len): (*mut f32, usize),
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
    if !disjoint || (m - 1) * rs + (n - 1) * cs >= dst_len {
        bail!("matmul: {m}×{n} result (strides {rs}, {cs}) does not fit {dst_len} values")
    }
    if k == 0 {
        if accumulate {
            return Ok(());
        }
        for i in 0..m {
            for j in 0..n {
                // SAFETY: the cell lies inside the checked extent.
                unsafe { dst.add(i * rs + j * cs).write(0.0) };
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
        let out = SendPtr(dst);
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
            dst,
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

    /// Row-major `m × k` and `k × n` operands of small, varied values.
    fn operands(m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        let a = (0..m * k)
            .map(|v| ((v * 7) % 23) as f32 * 0.1 - 1.0)
            .collect();
        let b = (0..k * n)
            .map(|v| ((v * 5) % 19) as f32 * 0.1 - 0.9)
            .collect();
        (a, b)
    }

    /// A pool of two threads, for the column split of parallel products.
    fn two_threads() -> Result<rayon::ThreadPool> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .map_err(candle_core::Error::wrap)
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
        let (a_buf, b_buf) = operands(m, k, n);
        let a = MatRef::row_major(&a_buf, m, k)?;
        let b = MatRef::row_major(&b_buf, k, n)?;
        let pool = two_threads()?;
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

    /// A new product equals the product into zeroed memory, value for value: on one thread,
    /// on two (the column split), through a transposed view, and with an empty inner
    /// dimension (zeros). Each time NaN-filled memory of the same size was just freed, which
    /// the allocator tends to hand back: a cell the product failed to write would show.
    #[test]
    fn new_product_writes_every_value() -> Result<()> {
        let pool = two_threads()?;
        for (m, k, n) in [(37, 50, 300), (5, 3, 7), (4, 0, 6)] {
            let (a_buf, b_buf) = operands(m, k, n);
            let a = MatRef::row_major(&a_buf, m, k)?;
            let at_buf: Vec<f32> = (0..k * m).map(|v| a_buf[(v % m) * k + v / m]).collect();
            let at = MatRef::row_major(&at_buf, k, m)?.t();
            let b = MatRef::row_major(&b_buf, k, n)?;
            let mut want = vec![0f32; m * n];
            matmul_into(&mut want, n, a, b, 0.5, false)?;
            for (lhs, parallel) in [(a, false), (a, true), (at, true)] {
                drop(std::hint::black_box(vec![f32::NAN; m * n]));
                let got = pool.install(|| matmul_new(lhs, b, 0.5, parallel))?;
                assert_eq!(got, want, "{m}×{k}·{k}×{n}, parallel {parallel}");
            }
        }
        let bad = MatRef::row_major(&[0f32; 6], 2, 3)?;
        assert!(matmul_new(bad, bad, 1.0, false).is_err());
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
