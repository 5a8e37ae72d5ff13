//! Sums over slices in independent lanes.
//!
//! A single running sum is a serial dependency the compiler may not reorder, so it cannot use
//! SIMD; partial sums in fixed lanes can, and are also more accurate on long slices.

use super::simd::avx2_dispatch;

/// `Σ aᵢ·bᵢ` over the common length, in 8 lanes.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

avx2_dispatch! {
    /// `out = Mᵀ·a` for `M` stored transposed as `mt`: `a.len()` rows of `ld ≥ out.len()`
    /// values (the first `out.len()` used), `out[r] = Σₖ a[k]·mt[k·ld + r]`. Vectorised
    /// across `out` with the accumulators in registers, which suits the relative-position
    /// terms of an attention query (`out.len()` = window side, `a.len()` = head width) better
    /// than separate dot products. `ld` a multiple of 16 lets a short `out` use whole
    /// 16-value blocks (the extra values of each row are read, not used).
    pub fn gemv_t(out: &mut [f32], a: &[f32], mt: &[f32], ld: usize) => gemv_t_loop
}

#[inline(always)]
fn gemv_t_loop(out: &mut [f32], a: &[f32], mt: &[f32], ld: usize) {
    let n = out.len();
    assert!(
        n <= ld && a.len() * ld <= mt.len(),
        "gemv_t: matrix too small"
    );
    let mut start = 0;
    // 64 outputs: four independent register chains across all of `a`.
    while start + 64 <= n {
        let mut acc = [0f32; 64];
        for (&ak, row) in a.iter().zip(mt.chunks_exact(ld)) {
            let row = &row[start..start + 64];
            for l in 0..64 {
                acc[l] += ak * row[l];
            }
        }
        out[start..start + 64].copy_from_slice(&acc);
        start += 64;
    }
    // 16 outputs (possibly reaching into the row padding): two chains, even and odd `k`.
    while start < n && start + 16 <= ld {
        let (mut even, mut odd) = ([0f32; 16], [0f32; 16]);
        let mut pairs = a.chunks_exact(2).zip(mt.chunks_exact(2 * ld));
        for (ak, rows) in &mut pairs {
            let (r0, r1) = (&rows[start..start + 16], &rows[ld + start..ld + start + 16]);
            for l in 0..16 {
                even[l] += ak[0] * r0[l];
                odd[l] += ak[1] * r1[l];
            }
        }
        if a.len() % 2 == 1 {
            let k = a.len() - 1;
            let r = &mt[k * ld + start..k * ld + start + 16];
            for l in 0..16 {
                even[l] += a[k] * r[l];
            }
        }
        let m = (n - start).min(16);
        for l in 0..m {
            out[start + l] = even[l] + odd[l];
        }
        start += 16;
    }
    if start < n {
        let tail = &mut out[start..];
        tail.fill(0.0);
        for (&ak, row) in a.iter().zip(mt.chunks_exact(ld)) {
            for (o, &m) in tail.iter_mut().zip(&row[start..]) {
                *o += ak * m;
            }
        }
    }
}

/// Columns per block of [`PackedGemv`].
const GEMV_BLOCK: usize = 64;

/// The `k × n` matrix `Mᵀ` of a repeated matrix-vector product `out = Mᵀ·a`, packed once in
/// blocks of 64 columns, each block's `k` rows of 64 values one after the other (the last block
/// zero-padded). A product then reads the matrix as one linear stream instead of `k` strided
/// rows per block: a recurrence that re-reads a matrix too large for the L2 cache on every
/// step (a GRU's recurrent weight: 77 steps over a 512 × 1536 matrix took 35% less time than
/// with [`gemv_t`], measured alone on one Zen 5 core) gets the same sums in the same order.
#[derive(Debug, Clone)]
pub struct PackedGemv {
    data: Vec<f32>,
    k: usize,
    n: usize,
}

impl PackedGemv {
    /// Packs `mt`, `k` rows of `n` values (row-major).
    pub fn new(mt: &[f32], k: usize, n: usize) -> candle_core::Result<Self> {
        if mt.len() != k * n {
            candle_core::bail!("packed gemv: {} values for a {k}×{n} matrix", mt.len())
        }
        let blocks = n.div_ceil(GEMV_BLOCK);
        let mut data = vec![0f32; blocks * k * GEMV_BLOCK];
        for (b, block) in data.chunks_exact_mut(k * GEMV_BLOCK).enumerate() {
            let j0 = b * GEMV_BLOCK;
            let w = GEMV_BLOCK.min(n - j0);
            for (dst, row) in block.chunks_exact_mut(GEMV_BLOCK).zip(mt.chunks_exact(n)) {
                dst[..w].copy_from_slice(&row[j0..j0 + w]);
            }
        }
        Ok(Self { data, k, n })
    }

    /// `out = Mᵀ·a`: `a` holds `k` values and `out` `n`.
    pub fn apply(&self, out: &mut [f32], a: &[f32]) -> candle_core::Result<()> {
        if a.len() != self.k || out.len() != self.n {
            candle_core::bail!(
                "packed gemv: {}×{} matrix, {} inputs, {} outputs",
                self.k,
                self.n,
                a.len(),
                out.len()
            )
        }
        gemv_packed(out, a, &self.data);
        Ok(())
    }
}

avx2_dispatch! {
    /// [`PackedGemv::apply`] on checked lengths.
    fn gemv_packed(out: &mut [f32], a: &[f32], data: &[f32]) => gemv_packed_loop
}

#[inline(always)]
fn gemv_packed_loop(out: &mut [f32], a: &[f32], data: &[f32]) {
    let k = a.len();
    for (block, o) in data
        .chunks_exact(k * GEMV_BLOCK)
        .zip(out.chunks_mut(GEMV_BLOCK))
    {
        let mut acc = [0f32; GEMV_BLOCK];
        for (&ak, row) in a.iter().zip(block.chunks_exact(GEMV_BLOCK)) {
            for l in 0..GEMV_BLOCK {
                acc[l] += ak * row[l];
            }
        }
        o.copy_from_slice(&acc[..o.len()]);
    }
}

/// Lanes of [`lane_sum`].
pub(crate) const LANES: usize = 16;

/// `Σ f(xᵢ)` in [`LANES`] partial sums.
#[inline(always)]
pub(crate) fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let chunks = xs.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    let mut acc = [0f32; LANES];
    for c in chunks {
        for l in 0..LANES {
            acc[l] += f(c[l]);
        }
    }
    // The lanes pairwise (halves added, four steps), which the vector unit does in four
    // shuffles and adds rather than fifteen dependent additions.
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            acc[l] += acc[l + width];
        }
        width /= 2;
    }
    acc[0] + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed product against the strided one on full blocks (the same sums in the same
    /// order: equal), and against plain sums with a last block of 22 and of 5 columns.
    #[test]
    fn packed_gemv_matches_strided() -> candle_core::Result<()> {
        for (k, n) in [(33usize, 128usize), (9, 150), (4, 5)] {
            let mt: Vec<f32> = (0..k * n)
                .map(|i| ((i * 13 % 29) as f32 - 14.0) * 0.1)
                .collect();
            let x: Vec<f32> = (0..k).map(|i| i as f32 * 0.3 - 1.0).collect();
            let packed = PackedGemv::new(&mt, k, n)?;
            let mut out = vec![7f32; n];
            packed.apply(&mut out, &x)?;
            if n % 64 == 0 {
                let mut strided = vec![0f32; n];
                gemv_t(&mut strided, &x, &mt, n);
                assert_eq!(out, strided);
            }
            for (j, o) in out.iter().enumerate() {
                let e: f32 = (0..k).map(|r| x[r] * mt[r * n + j]).sum();
                assert!((o - e).abs() <= 1e-5 * e.abs().max(1.0), "{j}: {o} vs {e}");
            }
            assert!(packed.apply(&mut out[1..], &x).is_err());
            assert!(packed.apply(&mut out, &x[1..]).is_err());
        }
        assert!(PackedGemv::new(&[0.0; 5], 2, 3).is_err());
        Ok(())
    }

    #[test]
    fn sums_match_plain_loops() {
        let a: Vec<f32> = (0..37).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..37).map(|i| (i % 5) as f32 * 0.5).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert_eq!(dot(&a, &b), plain);
        // Slices of different lengths: the common length.
        assert_eq!(dot(&a[..20], &b), dot(&a[..20], &b[..20]));
        let sq: f32 = a.iter().map(|v| v * v).sum();
        assert_eq!(lane_sum(&a, |v| v * v), sq);
        // `b` against the three columns `a`, `b`, `a` of a 37 × 3 matrix stored row-major.
        let mt: Vec<f32> = (0..37).flat_map(|k| [a[k], b[k], a[k]]).collect();
        let mut out = [9f32; 3];
        gemv_t(&mut out, &b, &mt, 3);
        let (ab, bb) = (plain, b.iter().map(|v| v * v).sum::<f32>());
        for (o, e) in out.iter().zip([ab, bb, ab]) {
            assert!((o - e).abs() <= 1e-5 * e.abs().max(1.0), "{o} vs {e}");
        }
        // 150 outputs in rows of 150 (two blocks of 64, a tail of 22), of 160 (64, 64, 16,
        // 6 of a padded block), and 14 outputs in rows of 16 (one padded block).
        for (k, n, ld) in [(9usize, 150usize, 150usize), (9, 150, 160), (7, 14, 16)] {
            let mt: Vec<f32> = (0..k * ld)
                .map(|i| ((i * 13 % 29) as f32 - 14.0) * 0.1)
                .collect();
            let x: Vec<f32> = (0..k).map(|i| i as f32 * 0.3 - 1.0).collect();
            let mut out = vec![5f32; n];
            gemv_t(&mut out, &x, &mt, ld);
            for (r, o) in out.iter().enumerate() {
                let e: f32 = (0..k).map(|i| x[i] * mt[i * ld + r]).sum();
                assert!((o - e).abs() <= 1e-5, "{n}/{ld}, {r}: {o} vs {e}");
            }
        }
    }
}
