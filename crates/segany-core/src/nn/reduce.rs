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
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

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
