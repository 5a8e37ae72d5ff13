//! Matrix products with bf16 inputs and f32 sums on CPUs with AVX-512 BF16 (`vdpbf16ps`).
//!
//! `vdpbf16ps` multiplies 32 pairs of bf16 values and adds each pair's two products to one of 16
//! f32 sums: twice the multiply-adds per instruction of an f32 FMA (measured here on an AMD
//! EPYC (Zen 4) core: 230 against 116 GFLOP/s). The products of two bf16 values are exact in
//! f32 and the sums stay in f32, so the only loss is rounding both inputs to bf16 (8 significant
//! bits, relative error ≤ 2⁻⁹): an opt-in trade, not the default.
//!
//! The right-hand matrix (a layer's weight) is packed once ([`PackedBf16`]): blocks of
//! [`NR`] columns, in each the `k` values of a column as consecutive pairs, so that one
//! 512-bit load holds a pair of rows for 16 columns. The left-hand rows are rounded and packed
//! per call into blocks of [`MR`] rows. A register tile of `MR × NR` sums runs over the whole
//! depth; threads take column blocks.

use super::disjoint::DisjointOut;
use candle_core::{bail, Result};
use rayon::prelude::*;

/// Rows of the register tile.
pub const MR: usize = 8;
/// Columns of the register tile (three 16-lane vectors).
pub const NR: usize = 48;

/// Whether this CPU runs the bf16 kernel (AVX-512 F and BF16).
pub fn bf16_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x` rounded to bf16 (to nearest, ties to even), as the high half of its bits. NaN stays NaN.
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// A bf16 value widened to f32 (exact).
#[inline(always)]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Two bf16 values in one 32-bit lane: `lo` (even `k`) in the low half, as `vdpbf16ps` pairs them.
#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    to_bf16(lo) as u32 | ((to_bf16(hi) as u32) << 16)
}

/// A `k × n` matrix rounded to bf16 and packed for [`matmul_bf16_into`].
#[derive(Clone)]
pub struct PackedBf16 {
    k: usize,
    n: usize,
    /// `[n.div_ceil(NR)][k.div_ceil(2)][NR]` pairs; padding columns and the odd row are zero.
    data: Vec<u32>,
}

impl std::fmt::Debug for PackedBf16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedBf16({}×{})", self.k, self.n)
    }
}

impl PackedBf16 {
    /// Packs the row-major `k × n` matrix `b` (row `p` at `p·stride`).
    pub fn pack(b: &[f32], k: usize, n: usize, stride: usize) -> Result<Self> {
        if k > 0 && n > 0 && (stride < n || (k - 1) * stride + n > b.len()) {
            bail!(
                "bf16 pack: a {k}×{n} matrix (stride {stride}) in {} values",
                b.len()
            )
        }
        let pairs = k.div_ceil(2);
        let blocks = n.div_ceil(NR);
        let mut data = vec![0u32; blocks * pairs * NR];
        data.par_chunks_mut(pairs * NR)
            .enumerate()
            .for_each(|(blk, out)| {
                let j0 = blk * NR;
                let w = NR.min(n - j0);
                for (p, row) in out.chunks_exact_mut(NR).enumerate() {
                    let r0 = &b[2 * p * stride + j0..2 * p * stride + j0 + w];
                    for (j, v) in row[..w].iter_mut().enumerate() {
                        let hi = if 2 * p + 1 < k {
                            b[(2 * p + 1) * stride + j0 + j]
                        } else {
                            0.0
                        };
                        *v = pair(r0[j], hi);
                    }
                }
            });
        Ok(Self { k, n, data })
    }

    /// Rows (`k`) of the packed matrix.
    pub fn rows(&self) -> usize {
        self.k
    }

    /// Columns (`n`) of the packed matrix.
    pub fn cols(&self) -> usize {
        self.n
    }
}

/// `dst = a · b` (or `dst += a · b` with `accumulate`) with `a` (`m × k`, row `i` at
/// `i·a_stride`) and `b` rounded to bf16, sums in f32; row `i` of `dst` at `i·dst_stride`.
/// Fails when the CPU lacks AVX-512 BF16 ([`bf16_supported`]) or a view overruns its slice.
/// `parallel` splits the column blocks over rayon's threads.
pub fn matmul_bf16_into(
    dst: &mut [f32],
    dst_stride: usize,
    (a, a_stride): (&[f32], usize),
    m: usize,
    b: &PackedBf16,
    accumulate: bool,
    parallel: bool,
) -> Result<()> {
    let (k, n) = (b.k, b.n);
    if m == 0 || n == 0 {
        return Ok(());
    }
    if a_stride < k || (m - 1) * a_stride + k > a.len() {
        bail!(
            "bf16 matmul: {m}×{k} left operand (stride {a_stride}) in {} values",
            a.len()
        )
    }
    if dst_stride < n || (m - 1) * dst_stride + n > dst.len() {
        bail!(
            "bf16 matmul: {m}×{n} result (stride {dst_stride}) in {} values",
            dst.len()
        )
    }
    if !bf16_supported() {
        bail!("bf16 matmul: this CPU lacks AVX-512 BF16")
    }
    let pairs = k.div_ceil(2);
    // The left operand as `[m.div_ceil(MR)][pairs][MR]` pairs, padding rows zero.
    let mut ap = vec![0u32; m.div_ceil(MR) * pairs * MR];
    let pack_rows = |(blk, out): (usize, &mut [u32])| {
        for r in 0..MR.min(m - blk * MR) {
            let row = &a[(blk * MR + r) * a_stride..(blk * MR + r) * a_stride + k];
            for p in 0..pairs {
                let hi = if 2 * p + 1 < k { row[2 * p + 1] } else { 0.0 };
                out[p * MR + r] = pair(row[2 * p], hi);
            }
        }
    };
    if parallel {
        ap.par_chunks_mut(pairs * MR)
            .enumerate()
            .for_each(pack_rows);
    } else {
        ap.chunks_mut(pairs * MR).enumerate().for_each(pack_rows);
    }
    let out = DisjointOut::new(dst);
    let column_block = |blk: usize| {
        let bp = &b.data[blk * pairs * NR..(blk + 1) * pairs * NR];
        let j0 = blk * NR;
        let cols = NR.min(n - j0);
        let mut tile = [0f32; MR * NR];
        for (mb, at) in ap.chunks_exact(pairs * MR).enumerate() {
            // SAFETY: `bf16_supported` was checked above; `at` and `bp` hold `pairs` rows of
            // `MR` and `NR` lanes.
            unsafe { tile_kernel(pairs, at, bp, &mut tile) };
            let i0 = mb * MR;
            for r in 0..MR.min(m - i0) {
                let off = (i0 + r) * dst_stride + j0;
                store_row(&out, off, &tile[r * NR..r * NR + cols], accumulate);
            }
        }
    };
    let blocks = n.div_ceil(NR);
    if parallel {
        (0..blocks).into_par_iter().for_each(column_block);
    } else {
        (0..blocks).for_each(column_block);
    }
    Ok(())
}

/// One row of a column block's tile into the result at `offset`, added or stored.
fn store_row(out: &DisjointOut, offset: usize, values: &[f32], accumulate: bool) {
    // SAFETY: the column blocks write disjoint column ranges, and nothing reads the result
    // until the loop has finished.
    let dst = unsafe { out.piece(offset, values.len()) };
    if accumulate {
        for (d, &v) in dst.iter_mut().zip(values) {
            *d += v;
        }
    } else {
        dst.copy_from_slice(values);
    }
}

/// `tile (MR × NR) = Σ_p a[p] ⊗ b[p]` over `pairs` packed pairs of rows.
///
/// # Safety
/// The CPU must support AVX-512 F and BF16; `a` holds `pairs·MR` lanes and `b` `pairs·NR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile_kernel(pairs: usize, a: &[u32], b: &[u32], tile: &mut [f32; MR * NR]) {
    use std::arch::x86_64::*;
    assert!(a.len() >= pairs * MR && b.len() >= pairs * NR);
    let mut acc = [[_mm512_setzero_ps(); NR / 16]; MR];
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    for p in 0..pairs {
        // SAFETY: within `a` and `b` (asserted lengths); unaligned loads.
        let bv: [__m512bh; NR / 16] = std::array::from_fn(|j| unsafe {
            std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                bp.add(p * NR + 16 * j) as *const _
            ))
        });
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: within `a`.
            let av = unsafe {
                std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(
                    *ap.add(p * MR + r) as i32
                ))
            };
            for (s, &bj) in row.iter_mut().zip(&bv) {
                *s = _mm512_dpbf16_ps(*s, av, bj);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (j, s) in row.iter().enumerate() {
            // SAFETY: `tile` holds MR·NR values.
            unsafe { _mm512_storeu_ps(tile.as_mut_ptr().add(r * NR + 16 * j), *s) };
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn tile_kernel(_: usize, _: &[u32], _: &[u32], _: &mut [f32; MR * NR]) {
    unreachable!("bf16_supported() is false off x86_64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 * 3.4 - 1.7)
            .collect()
    }

    #[test]
    fn rounding_to_bf16() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties to even (1.0).
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        // 1 + 3·2⁻⁸ is halfway between 1 + 2⁻⁷ and 1 + 2⁻⁶: ties to even (1 + 2⁻⁶).
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 1.0 / 64.0);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        for x in values(1000, 3) {
            let r = from_bf16(to_bf16(x));
            assert!((r - x).abs() <= x.abs() / 256.0, "{x} -> {r}");
        }
    }

    /// Against the product of the bf16-rounded inputs summed in f64 (what the kernel computes
    /// up to f32 summation), for shapes with partial row and column blocks and an odd depth,
    /// strided views, overwrite and accumulate; the bf16 result also stays within bf16's
    /// rounding of the exact f32 product.
    #[test]
    fn matches_rounded_product() -> Result<()> {
        if !bf16_supported() {
            eprintln!("NOTICE: no AVX-512 BF16 on this CPU; bf16 matmul test skipped");
            let mut d = vec![0f32; 4];
            let b = PackedBf16::pack(&[1.0; 4], 2, 2, 2)?;
            assert!(matmul_bf16_into(&mut d, 2, (&[1.0; 4], 2), 2, &b, false, false).is_err());
            return Ok(());
        }
        for &(m, k, n) in &[(1, 1, 1), (13, 37, 50), (8, 64, 48), (30, 129, 100)] {
            let (a_stride, b_stride, d_stride) = (k + 3, n + 5, n + 2);
            let a = values(m * a_stride, 1);
            let b = values(k * b_stride, 2);
            let packed = PackedBf16::pack(&b, k, n, b_stride)?;
            assert_eq!((packed.rows(), packed.cols()), (k, n));
            for (accumulate, parallel) in [(false, true), (true, false)] {
                let start = values(m * d_stride, 4);
                let mut dst = start.clone();
                matmul_bf16_into(
                    &mut dst,
                    d_stride,
                    (&a, a_stride),
                    m,
                    &packed,
                    accumulate,
                    parallel,
                )?;
                for i in 0..m {
                    for j in 0..d_stride {
                        let got = dst[i * d_stride + j];
                        if j >= n {
                            assert_eq!(got, start[i * d_stride + j], "padding column touched");
                            continue;
                        }
                        let (mut rounded, mut exact, mut mag) = (0f64, 0f64, 0f64);
                        for p in 0..k {
                            let (x, y) = (a[i * a_stride + p], b[p * b_stride + j]);
                            rounded += from_bf16(to_bf16(x)) as f64 * from_bf16(to_bf16(y)) as f64;
                            exact += x as f64 * y as f64;
                            mag += (x as f64 * y as f64).abs();
                        }
                        let base = if accumulate {
                            start[i * d_stride + j] as f64
                        } else {
                            0.0
                        };
                        let got = got as f64 - base;
                        assert!(
                            (got - rounded).abs() <= 1e-5 * mag.max(1.0),
                            "{m}×{k}×{n} ({i},{j}): {got} vs {rounded}"
                        );
                        assert!(
                            (got - exact).abs() <= mag / 128.0,
                            "{m}×{k}×{n} ({i},{j}): {got} vs exact {exact}"
                        );
                    }
                }
            }
        }
        let packed = PackedBf16::pack(&values(12, 1), 3, 4, 4)?;
        let mut dst = vec![0f32; 8];
        assert!(
            matmul_bf16_into(&mut dst, 4, (&values(5, 1), 3), 2, &packed, false, false).is_err()
        );
        assert!(PackedBf16::pack(&values(11, 1), 3, 4, 4).is_err());
        Ok(())
    }
}
