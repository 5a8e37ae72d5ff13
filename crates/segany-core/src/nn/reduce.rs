//! Sums over slices in independent lanes.
//!
//! A single running sum is a serial dependency the compiler may not reorder, so it cannot use
//! SIMD; partial sums in fixed lanes can, and are also more accurate on long slices.

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
    }
}
