//! A vectorisable `exp` and the softmax of a row built on it.
//!
//! glibc's `expf` is a scalar call, so a softmax loop over it cannot use SIMD; SAM's mask
//! decoder evaluates about a million exponentials per prompt. [`exp`] is the classic range
//! reduction `eˣ = 2ⁿ·eʳ` (`n = round(x·log₂e)`, `r = x − n·ln 2` in two parts, `|r| ≤ ln2/2`)
//! with a degree-6 polynomial for `eʳ` (Cephes' `expf` coefficients), built from multiplies,
//! adds and integer bit operations only. Its relative error against `exp` in f64 is below
//! 3e-7 on the range softmax uses (asserted below).

use super::reduce::{lane_sum, LANES};
use super::simd::avx2_dispatch;

/// `log₂ e`.
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split so that `n·LN2_HI` is exact for the `n` that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding then subtracting 1.5·2²³ rounds an f32 of magnitude < 2²² to the nearest integer.
const ROUND: f32 = 12_582_912.0;
/// `eʳ ≈ 1 + r + r²·P(r)`, P's coefficients highest degree first.
const P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// `eˣ` in f32 for `x ≤ 88.7`; inputs below −87.3 give ≈1.2e-38 instead of smaller values or
/// zero (what a softmax with its maximum subtracted needs). NaN propagates.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = P[0];
    for &c in &P[1..] {
        p = p * r + c;
    }
    let e = p * (r * r) + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    e * scale
}

avx2_dispatch! {
    /// `row ← softmax(row)`: the maximum subtracted, [`exp`], then divided by the sum (as
    /// `torch.softmax`, up to the exponential's rounding).
    pub fn softmax_in_place => softmax_loop
}

#[inline(always)]
fn softmax_loop(row: &mut [f32]) {
    let chunks = row.chunks_exact(LANES);
    let mut max = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let mut lanes = [f32::NEG_INFINITY; LANES];
    for c in chunks {
        for l in 0..LANES {
            lanes[l] = lanes[l].max(c[l]);
        }
    }
    max = lanes.iter().copied().fold(max, f32::max);
    for v in row.iter_mut() {
        *v = exp(*v - max);
    }
    let inv = 1.0 / lane_sum(row, |v| v);
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// Softmax of every `row_len`-long row of `data` in place (`data.len()` a multiple of
/// `row_len`). For many short rows (attention over a few tokens) the exponentials run as one
/// vectorised pass over all of `data` instead of one short loop per row.
pub fn softmax_rows_in_place(data: &mut [f32], row_len: usize) {
    if row_len == 0 {
        return;
    }
    for row in data.chunks_mut(row_len) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for v in row.iter_mut() {
            *v -= max;
        }
    }
    exp_in_place(data);
    for row in data.chunks_mut(row_len) {
        let inv = 1.0 / lane_sum(row, |v| v);
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

avx2_dispatch! {
    /// `v ← exp(v)` for every value of `xs`.
    pub fn exp_in_place => exp_loop
}

#[inline(always)]
fn exp_loop(xs: &mut [f32]) {
    for v in xs.iter_mut() {
        *v = exp(*v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_f64_reference() {
        let mut worst = 0f64;
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4; // [-87, 88]
            let e = (x as f64).exp();
            worst = worst.max(((exp(x) as f64) - e).abs() / e);
        }
        assert!(worst < 3e-7, "max relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1.3e-38);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn softmax_matches_definition() {
        for len in [1usize, 7, 16, 33, 4096] {
            let row: Vec<f32> = (0..len)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.21)
                .collect();
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
            let mut fast = row.clone();
            softmax_in_place(&mut fast);
            let mut baseline = row.clone();
            softmax_loop(&mut baseline);
            // The same row three times through the many-rows version.
            let mut rows: Vec<f32> = row.iter().chain(&row).chain(&row).copied().collect();
            softmax_rows_in_place(&mut rows, len);
            for (i, ((f, b), v)) in fast.iter().zip(&baseline).zip(&row).enumerate() {
                let e = (*v as f64 - max).exp() / sum;
                assert!((*f as f64 - e).abs() < 1e-6 * e.max(1e-3), "{f} vs {e}");
                assert!((*b as f64 - e).abs() < 1e-6 * e.max(1e-3), "{b} vs {e}");
                for r in 0..3 {
                    let m = rows[r * len + i] as f64;
                    assert!((m - e).abs() < 1e-6 * e.max(1e-3), "rows: {m} vs {e}");
                }
            }
        }
    }
}
