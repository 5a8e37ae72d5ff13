//! Products whose left side has only a few rows.

use super::simd::avx2_dispatch;
use candle_core::{bail, Result};

/// A product with few rows and many columns, `a (m × k)` small, `b (k × n)`: writes
/// `dst = scale·(a·b)` (or adds it, with `accumulate`), row `i` of `dst` at `i·dst_stride`,
/// row `i` of `a` at `i·a_stride`, row `p` of `b` at `p·b_stride` (each row `n` or `k` long;
/// the slices may start anywhere inside a wider matrix). For attention scores of a few tokens
/// against thousands of image tokens (`m` = tokens, `k` = head width) and linear layers on a
/// few tokens, where a general gemm spends its time packing, or splits the rows into a
/// register tile's 6 and the rest and reads `b` once for each part.
///
/// On CPUs with AVX-512 up to 8 rows of `a` share one pass over `b`, 32 columns at a time (64
/// for one or two rows) with all their sums in registers (fused multiply-adds); elsewhere each
/// row takes its own pass, vectorised across 64 columns.
///
/// ```
/// use segany_core::nn::matmul_few_rows_into;
/// // (2 × 3)·(3 × 2), doubled, into a destination with rows 4 apart.
/// let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
/// let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
/// let mut dst = [9.0f32; 8];
/// matmul_few_rows_into(&mut dst, 4, (&a, 3), (&b, 2), (2, 3, 2), 2.0, false)?;
/// assert_eq!(dst, [8.0, 10.0, 9.0, 9.0, 20.0, 22.0, 9.0, 9.0]);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn matmul_few_rows_into(
    dst: &mut [f32],
    dst_stride: usize,
    (a, a_stride): (&[f32], usize),
    (b, b_stride): (&[f32], usize),
    (m, k, n): (usize, usize, usize),
    scale: f32,
    accumulate: bool,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let fits = |len: usize, rows: usize, stride: usize, cols: usize| {
        rows == 0 || (stride >= cols && (rows - 1) * stride + cols <= len)
    };
    if !fits(dst.len(), m, dst_stride, n)
        || !fits(a.len(), m, a_stride, k)
        || !fits(b.len(), k, b_stride, n)
    {
        bail!(
            "matmul (few rows): {m}×{k} times {k}×{n} into {} values (strides {dst_stride}, \
             {a_stride}, {b_stride}; slices of {} and {})",
            dst.len(),
            a.len(),
            b.len()
        )
    }
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has AVX-512F (checked just above); the views fit their slices
        // (checked above).
        unsafe {
            avx512::few_rows(
                dst,
                dst_stride,
                (a, a_stride),
                (b, b_stride),
                (m, k, n),
                scale,
                accumulate,
            )
        };
        return Ok(());
    }
    few_rows(
        dst,
        dst_stride,
        a,
        a_stride,
        b,
        b_stride,
        (m, k, n),
        scale,
        accumulate,
    );
    Ok(())
}

avx2_dispatch! {
    #[allow(clippy::too_many_arguments)]
    fn few_rows(
        dst: &mut [f32],
        ds: usize,
        a: &[f32],
        as_: usize,
        b: &[f32],
        bs: usize,
        dims: (usize, usize, usize),
        scale: f32,
        accumulate: bool,
    ) => few_rows_loop
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn few_rows_loop(
    dst: &mut [f32],
    ds: usize,
    a: &[f32],
    as_: usize,
    b: &[f32],
    bs: usize,
    (m, k, n): (usize, usize, usize),
    scale: f32,
    accumulate: bool,
) {
    const W: usize = 64;
    let mut j0 = 0;
    while j0 < n {
        let w = W.min(n - j0);
        for i in 0..m {
            let ai = &a[i * as_..i * as_ + k];
            let mut acc = [0f32; W];
            if w == W {
                for (p, &ap) in ai.iter().enumerate() {
                    let row = &b[p * bs + j0..p * bs + j0 + W];
                    for l in 0..W {
                        acc[l] += ap * row[l];
                    }
                }
            } else {
                for (p, &ap) in ai.iter().enumerate() {
                    let row = &b[p * bs + j0..p * bs + j0 + w];
                    for (s, &v) in acc.iter_mut().zip(row) {
                        *s += ap * v;
                    }
                }
            }
            let out = &mut dst[i * ds + j0..i * ds + j0 + w];
            if accumulate {
                for (o, s) in out.iter_mut().zip(&acc) {
                    *o += scale * s;
                }
            } else {
                for (o, s) in out.iter_mut().zip(&acc) {
                    *o = scale * s;
                }
            }
        }
        j0 += w;
    }
}

/// Whether the AVX-512 kernel runs (x86-64 CPUs with AVX-512F).
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// Whether [`matmul_few_rows_into`] beats the general gemm for a left side of `m` rows: 2 to
/// 8 rows on CPUs where it has its AVX-512 kernel (one pass over the right side, where gemm
/// makes one per register tile of 6 rows and one for the rest; a single row goes to gemm's
/// own matrix-vector kernel).
///
/// ```
/// use segany_core::nn::few_rows_preferred;
/// assert!(!few_rows_preferred(1) && !few_rows_preferred(9));
/// ```
pub fn few_rows_preferred(m: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        (2..=8).contains(&m) && avx512()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = m;
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// [`super::matmul_few_rows_into`] after its checks: rows in groups of up to 8.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, and the views must fit their slices (as checked by the
    /// caller).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn few_rows(
        dst: &mut [f32],
        ds: usize,
        (a, as_): (&[f32], usize),
        (b, bs): (&[f32], usize),
        (m, k, n): (usize, usize, usize),
        scale: f32,
        accumulate: bool,
    ) {
        let mut i0 = 0;
        while i0 < m {
            let rows = (m - i0).min(8);
            let g = Group {
                dst: dst[i0 * ds..].as_mut_ptr(),
                ds,
                a: a[i0 * as_..].as_ptr(),
                as_,
                b: b.as_ptr(),
                bs,
                k,
                n,
                scale,
                accumulate,
            };
            // SAFETY: rows i0.. of the views lie in the slices (the caller's checks).
            unsafe {
                match rows {
                    // Blocks of 64 columns for one or two rows, 32 for more: 8 to 16
                    // independent sums, enough to cover the multiply-adds' latency.
                    1 => g.run::<1, 4>(),
                    2 => g.run::<2, 4>(),
                    3 => g.run::<3, 2>(),
                    4 => g.run::<4, 2>(),
                    5 => g.run::<5, 2>(),
                    6 => g.run::<6, 2>(),
                    7 => g.run::<7, 2>(),
                    _ => g.run::<8, 2>(),
                }
            }
            i0 += rows;
        }
    }

    /// Rows `0..R` of the product, from their first elements.
    struct Group {
        dst: *mut f32,
        ds: usize,
        a: *const f32,
        as_: usize,
        b: *const f32,
        bs: usize,
        k: usize,
        n: usize,
        scale: f32,
        accumulate: bool,
    }

    impl Group {
        /// All columns, `16·V` at a time.
        ///
        /// # Safety
        /// AVX-512F; rows `0..R` of `dst` and `a` and rows `0..k` of `b` in bounds.
        #[target_feature(enable = "avx512f")]
        unsafe fn run<const R: usize, const V: usize>(&self) {
            let mut j0 = 0;
            while j0 < self.n {
                let w = (16 * V).min(self.n - j0);
                // Lanes of the block's V vectors that are columns of the product.
                let lanes = |v: usize| -> __mmask16 {
                    let live = w.saturating_sub(16 * v).min(16);
                    ((1u32 << live) - 1) as __mmask16
                };
                let masks: [__mmask16; V] = std::array::from_fn(lanes);
                let mut acc = [[_mm512_setzero_ps(); V]; R];
                for p in 0..self.k {
                    let bp = self.b.wrapping_add(p * self.bs + j0);
                    // This row's part of the block four ahead, one cache line per vector, into
                    // L2: the rows are far apart (a weight's columns), a stride the hardware
                    // prefetchers do not follow across pages, and a weight read once per call
                    // comes from memory (7×256×2048: 430 → 135 µs). A prefetch never faults,
                    // even past the end.
                    for v in 0..V {
                        _mm_prefetch::<_MM_HINT_T1>(bp.wrapping_add(16 * (4 * V + v)) as *const i8);
                    }
                    // SAFETY: row p of b, columns j0..j0 + w (masked loads read no others).
                    let bv: [__m512; V] = std::array::from_fn(|v| unsafe {
                        _mm512_maskz_loadu_ps(masks[v], bp.wrapping_add(16 * v))
                    });
                    for (r, row) in acc.iter_mut().enumerate() {
                        // SAFETY: element (r, p) of a.
                        let av = _mm512_set1_ps(unsafe { *self.a.add(r * self.as_ + p) });
                        for (s, &bj) in row.iter_mut().zip(&bv) {
                            *s = _mm512_fmadd_ps(av, bj, *s);
                        }
                    }
                }
                let scale = _mm512_set1_ps(self.scale);
                for (r, row) in acc.iter().enumerate() {
                    for (v, (&s, &mask)) in row.iter().zip(&masks).enumerate() {
                        // SAFETY: row r of dst, columns j0 + 16v.. (masked to the product).
                        unsafe {
                            let out = self.dst.wrapping_add(r * self.ds + j0 + 16 * v);
                            let s = _mm512_mul_ps(scale, s);
                            let s = if self.accumulate {
                                _mm512_add_ps(_mm512_maskz_loadu_ps(mask, out), s)
                            } else {
                                s
                            };
                            _mm512_mask_storeu_ps(out, mask, s);
                        }
                    }
                }
                j0 += w;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Product<'a> = &'a dyn Fn(
        &mut [f32],
        usize,
        (&[f32], usize),
        (&[f32], usize),
        (usize, usize, usize),
        bool,
    );

    /// Compares `product` with plain loops for row counts on both sides of the 8-row groups
    /// and column counts with full and partial 32/64-column blocks, on views starting inside
    /// wider matrices, overwriting and accumulating (stale destination values are replaced, or
    /// kept and added to; values outside the product are untouched).
    fn check_against_loops(product: Product) {
        let k = 16usize;
        let (ds, as_, bs) = (160usize, 20usize, 170usize);
        for m in [1usize, 2, 3, 5, 7, 8, 11, 17] {
            for n in [150usize, 10, 32] {
                let a: Vec<f32> = (0..m * as_)
                    .map(|v| ((v * 7 % 23) as f32 - 11.0) * 0.1)
                    .collect();
                let b: Vec<f32> = (0..(k + 1) * bs)
                    .map(|v| ((v * 5 % 31) as f32 - 15.0) * 0.07)
                    .collect();
                // Views: a from its column 3, b from row 1 and column 9, dst from column 4.
                let (a0, b0, d0) = (3, bs + 9, 4);
                for accumulate in [false, true] {
                    let mut dst: Vec<f32> = (0..m * ds).map(|v| v as f32 * 0.01).collect();
                    let before = dst.clone();
                    product(
                        &mut dst[d0..],
                        ds,
                        (&a[a0..], as_),
                        (&b[b0..], bs),
                        (m, k, n),
                        accumulate,
                    );
                    for i in 0..m {
                        for j in 0..ds - d0 {
                            let old = before[i * ds + d0 + j];
                            let got = dst[i * ds + d0 + j];
                            if j >= n {
                                assert_eq!(got, old, "m={m} n={n}: outside the product ({i}, {j})");
                                continue;
                            }
                            let s: f32 = (0..k)
                                .map(|p| a[a0 + i * as_ + p] * b[b0 + p * bs + j])
                                .sum();
                            let want = if accumulate { old + 0.5 * s } else { 0.5 * s };
                            assert!(
                                (got - want).abs() < 1e-5,
                                "m={m} n={n} accumulate={accumulate} ({i}, {j}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The dispatched product (the AVX-512 kernel where the CPU has it) and the portable loops.
    #[test]
    fn few_rows_match_naive() -> Result<()> {
        check_against_loops(&|dst, ds, a, b, dims, acc| {
            matmul_few_rows_into(dst, ds, a, b, dims, 0.5, acc).expect("views fit")
        });
        check_against_loops(&|dst, ds, (a, as_), (b, bs), dims, acc| {
            few_rows_loop(dst, ds, a, as_, b, bs, dims, 0.5, acc)
        });
        let (m, k, n) = (7usize, 16usize, 150usize);
        let (as_, bs) = (20usize, 170usize);
        let (a, b) = (vec![0f32; m * as_], vec![0f32; k * bs]);
        // A view too small for its extent is an error, not a panic.
        let mut dst = vec![0f32; 10];
        assert!(
            matmul_few_rows_into(&mut dst, 5, (&a, as_), (&b, bs), (m, k, n), 1.0, false).is_err()
        );
        Ok(())
    }
}
