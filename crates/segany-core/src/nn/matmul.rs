//! Strided f32 matrix products on plain slices, for CPU kernels that work block by block.
//!
//! candle's `matmul` needs tensors and parallelises inside each product; a kernel that already
//! runs many small products in parallel (attention over windows and heads) wants them serial,
//! with views into existing buffers (any row and column stride) and a scale folded in. This is
//! a bounds-checked wrapper over the `gemm` crate, the same kernels candle's CPU matmul uses.

use candle_core::{bail, Result};

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
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the views were bounds-checked on construction and `dst` above; gemm reads
    // `a` and `b` only inside those extents and writes only the m×n cells of `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            cs as isize,
            rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            if accumulate { 1.0 } else { 0.0 },
            scale,
            false,
            false,
            false,
            parallelism,
        )
    }
    Ok(())
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
