//! A vectorisable `exp` and the softmax of a row built on it.
//!
//! glibc's `expf` is a scalar call, so a softmax loop over it cannot use SIMD; SAM's mask
//! decoder evaluates about a million exponentials per prompt. [`exp`] is the classic range
//! reduction `eˣ = 2ⁿ·eʳ` (`n = round(x·log₂e)`, `r = x − n·ln 2` in two parts, `|r| ≤ ln2/2`)
//! with a degree-6 polynomial for `eʳ` (Cephes' `expf` coefficients), built from multiplies,
//! adds and integer bit operations only. Its relative error against `exp` in f64 is below
//! 3e-7 on the range softmax uses (asserted below). The softmax loops' AVX-512 and AVX2 builds
//! evaluate its multiply-adds fused (one FMA instruction each, rounded once), the baseline
//! build and the scalar [`exp`] as a multiply then an add.

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

/// `eˣ` in f32 for `x ≤ 88.3` (larger inputs give e^88.3 ≈ 2.1e38); inputs below −87.3 give
/// ≈1.2e-38 instead of smaller values or zero (what a softmax with its maximum subtracted
/// needs). NaN propagates.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    exp_with::<Separate>(x)
}

/// How [`exp_with`] evaluates its multiply-adds.
pub(crate) trait MulAdd {
    /// `a·b + c`.
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

/// `a·b + c` rounded once (`f32::mul_add`): one instruction in the builds for CPUs with FMA
/// (half the instructions of [`exp`]'s polynomial), a library call elsewhere.
pub(crate) struct Fused;

/// `a·b + c` rounded twice, as written: the baseline build's arithmetic.
pub(crate) struct Separate;

impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// [`exp`] with its multiply-adds evaluated as `M` says. The fused form rounds once where the
/// separate one rounds twice; both stay within [`exp`]'s error bound (tested).
#[inline(always)]
pub(crate) fn exp_with<M: MulAdd>(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    // `t`'s low mantissa bits hold the integer `n` (|n| ≤ 127 ≪ 2²²): 2ⁿ is built from them
    // with integer operations, because a float-to-int cast (`n as i32`, saturating) does not
    // vectorise.
    let t = M::mul_add(x, LOG2E, ROUND);
    let n = t - ROUND;
    let r = M::mul_add(n, -LN2_LO, M::mul_add(n, -LN2_HI, x));
    let mut p = P[0];
    for &c in &P[1..] {
        p = M::mul_add(p, r, c);
    }
    let e = M::mul_add(p, r * r, r) + 1.0;
    let scale = f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits() - 127) << 23);
    e * scale
}

avx2_dispatch! {
    /// `row ← softmax(row)`: the maximum subtracted, [`exp`], then divided by the sum (as
    /// `torch.softmax`, up to the exponential's rounding).
    pub fn softmax_in_place(xs: &mut [f32]) => softmax_loop::<Fused>, baseline softmax_loop::<Separate>
}

#[inline(always)]
fn softmax_loop<M: MulAdd>(row: &mut [f32]) {
    let inv = 1.0 / rel_softmax_loop::<M>(row, None);
    for v in row.iter_mut() {
        *v *= inv;
    }
}

avx2_dispatch! {
    /// The unnormalised softmax of one attention logits row with decomposed relative
    /// positions: the row is a `(th.len(), tw.len())` grid of logits, each biased as
    /// `(logit + th[i]) + tw[j]` (SAM's order), then replaced by `exp(v − max)`. Returns the
    /// sum of the exponentials; the caller divides by it (after the product with the values,
    /// where it costs `head_dim` instead of `row.len()` divisions). With `rel` `None` the row
    /// is taken as it is (plain attention).
    pub fn rel_softmax_unnormalised(row: &mut [f32], rel: Option<(&[f32], &[f32])>) -> f32
        => rel_softmax_loop::<Fused>, baseline rel_softmax_loop::<Separate>
}

#[inline(always)]
fn rel_softmax_loop<M: MulAdd>(row: &mut [f32], rel: Option<(&[f32], &[f32])>) -> f32 {
    if let Some((th, tw)) = rel {
        for (chunk, &h) in row.chunks_exact_mut(tw.len().max(1)).zip(th) {
            for (o, &w) in chunk.iter_mut().zip(tw) {
                *o = (*o + h) + w;
            }
        }
    }
    let max = lane_max(row);
    exp_minus_max::<M>(row, max)
}

avx2_dispatch! {
    /// One chunk of a softmax row computed chunk by chunk ("online", as flash attention):
    /// `running` holds the row's maximum and sum of exponentials so far (start with
    /// `(−∞, 0)`). Replaces the chunk by `exp(v − m)` for the new maximum `m`, updates
    /// `running`, and returns `exp(m_old − m)`, the factor by which everything accumulated from
    /// earlier chunks must be scaled (0 for the first chunk). After the last chunk the
    /// probabilities are the accumulated values divided by `running.1`.
    pub fn softmax_chunk_unnormalised(chunk: &mut [f32], running: &mut (f32, f32)) -> f32
        => softmax_chunk_loop::<Fused>, baseline softmax_chunk_loop::<Separate>
}

#[inline(always)]
fn softmax_chunk_loop<M: MulAdd>(chunk: &mut [f32], running: &mut (f32, f32)) -> f32 {
    let (old, sum) = *running;
    let chunk_max = lane_max(chunk);
    let max = if chunk_max > old { chunk_max } else { old };
    let s = exp_minus_max::<M>(chunk, max);
    let alpha = if old == f32::NEG_INFINITY {
        0.0
    } else {
        exp_with::<M>(old - max)
    };
    *running = (max, sum * alpha + s);
    alpha
}

/// `row ← exp(row − max)`; returns the sum.
#[inline(always)]
fn exp_minus_max<M: MulAdd>(row: &mut [f32], max: f32) -> f32 {
    let mut chunks = row.chunks_exact_mut(LANES);
    let mut acc = [0f32; LANES];
    for c in &mut chunks {
        for l in 0..LANES {
            let e = exp_with::<M>(c[l] - max);
            c[l] = e;
            acc[l] += e;
        }
    }
    let mut tail = 0f32;
    for v in chunks.into_remainder() {
        *v = exp_with::<M>(*v - max);
        tail += *v;
    }
    acc.iter().sum::<f32>() + tail
}

avx2_dispatch! {
    /// Softmax down each column of a `rows × cols` block whose rows start `stride` apart:
    /// `data[i·stride + j]` for `i < rows` is one distribution per `j < cols`. For attention
    /// over a few tokens stored token-major (one row per token, one column per image token):
    /// vectorised across the columns, where a softmax along short rows cannot be.
    ///
    /// Panics if the block does not fit `data` (`stride < cols`, or the last row past its end).
    pub fn softmax_columns_in_place(data: &mut [f32], stride: usize, rows: usize, cols: usize)
        => softmax_columns_loop::<Fused>, baseline softmax_columns_loop::<Separate>
}

#[inline(always)]
fn softmax_columns_loop<M: MulAdd>(data: &mut [f32], stride: usize, rows: usize, cols: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        stride >= cols && (rows - 1) * stride + cols <= data.len(),
        "softmax_columns_in_place: {rows} × {cols} block of stride {stride} in {} values",
        data.len()
    );
    let mut j0 = 0;
    while j0 < cols {
        let w = LANES.min(cols - j0);
        if w == LANES {
            softmax_column_block::<M>(data, stride, rows, j0, LANES);
        } else {
            softmax_column_block::<M>(data, stride, rows, j0, w);
        }
        j0 += w;
    }
}

/// Columns `j0..j0 + w` (`w ≤ LANES`) of [`softmax_columns_in_place`].
#[inline(always)]
fn softmax_column_block<M: MulAdd>(
    data: &mut [f32],
    stride: usize,
    rows: usize,
    j0: usize,
    w: usize,
) {
    let mut max = [f32::NEG_INFINITY; LANES];
    for i in 0..rows {
        let r = &data[i * stride + j0..i * stride + j0 + w];
        for l in 0..w {
            max[l] = if r[l] > max[l] { r[l] } else { max[l] };
        }
    }
    let mut sum = [0f32; LANES];
    for i in 0..rows {
        let r = &mut data[i * stride + j0..i * stride + j0 + w];
        for l in 0..w {
            let e = exp_with::<M>(r[l] - max[l]);
            r[l] = e;
            sum[l] += e;
        }
    }
    let mut inv = [0f32; LANES];
    for l in 0..w {
        inv[l] = 1.0 / sum[l];
    }
    for i in 0..rows {
        let r = &mut data[i * stride + j0..i * stride + j0 + w];
        for l in 0..w {
            r[l] *= inv[l];
        }
    }
}

/// The largest value of `xs` (−∞ for an empty slice), in [`LANES`] partial maxima.
#[inline(always)]
fn lane_max(xs: &[f32]) -> f32 {
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let mut lanes = [f32::NEG_INFINITY; LANES];
    for c in chunks {
        for l in 0..LANES {
            lanes[l] = if c[l] > lanes[l] { c[l] } else { lanes[l] };
        }
    }
    lanes.iter().copied().fold(tail, f32::max)
}

avx2_dispatch! {
    /// Softmax of every `row_len`-long row of `data` in place (`data.len()` a multiple of
    /// `row_len`). For many short rows (attention over a few tokens) the exponentials run as
    /// one vectorised pass over all of `data` instead of one short loop per row.
    pub fn softmax_rows_in_place(data: &mut [f32], row_len: usize) => softmax_rows_loop::<Fused>, baseline softmax_rows_loop::<Separate>
}

#[inline(always)]
fn softmax_rows_loop<M: MulAdd>(data: &mut [f32], row_len: usize) {
    if row_len == 0 {
        return;
    }
    for row in data.chunks_mut(row_len) {
        // A plain comparison chain: `f32::max` handles NaN with extra work per value, which
        // dominates rows this short (NaN is skipped either way unless it comes first).
        let mut max = row[0];
        for &v in &row[1..] {
            if v > max {
                max = v;
            }
        }
        for v in row.iter_mut() {
            *v -= max;
        }
    }
    exp_in_place(data);
    for row in data.chunks_mut(row_len) {
        // Sixteen lanes only pay off for rows at least that long; shorter ones sum in order
        // (the same order the lanes take for them).
        let sum = if row.len() < 16 {
            row.iter().fold(0f32, |s, &v| s + v)
        } else {
            lane_sum(row, |v| v)
        };
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

avx2_dispatch! {
    /// `v ← exp(v)` for every value of `xs`.
    pub fn exp_in_place(xs: &mut [f32]) => exp_loop::<Fused>, baseline exp_loop::<Separate>
}

#[inline(always)]
fn exp_loop<M: MulAdd>(xs: &mut [f32]) {
    for v in xs.iter_mut() {
        *v = exp_with::<M>(*v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_f64_reference() {
        // Both forms of the multiply-adds (fused in the vector builds, separate in the
        // baseline build and in `exp`).
        let (mut worst, mut worst_fused, mut differ) = (0f64, 0f64, 0usize);
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4; // [-87, 88]
            let e = (x as f64).exp();
            worst = worst.max(((exp(x) as f64) - e).abs() / e);
            let fused = exp_with::<Fused>(x);
            worst_fused = worst_fused.max(((fused as f64) - e).abs() / e);
            differ += usize::from(fused != exp(x));
        }
        assert!(worst < 3e-7, "max relative error {worst}");
        assert!(
            worst_fused < 3e-7,
            "fused: max relative error {worst_fused}"
        );
        assert!(differ > 0, "the fused form is a different computation");
        assert_eq!(exp_with::<Fused>(0.0), 1.0);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1.3e-38);
        assert!(exp(f32::NAN).is_nan());
        // The top of the range stays finite.
        assert!(exp(88.3).is_finite() && exp(1000.0).is_finite());
        let top = (88.3f32 as f64).exp();
        assert!(((exp(88.3) as f64) - top).abs() < 3e-7 * top);
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
            softmax_loop::<Separate>(&mut baseline);
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

    /// Chunk by chunk, with the accumulated values rescaled by the returned factors, the
    /// probabilities and a weighted sum match the definition; the row's maximum rises from
    /// chunk to chunk (so the factors matter) and one chunk is shorter than the lanes.
    #[test]
    fn chunked_softmax_matches_definition() {
        let len = 300usize;
        let row: Vec<f32> = (0..len)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.05 + i as f32 * 0.04)
            .collect();
        let w: Vec<f32> = (0..len).map(|i| (i % 13) as f32 - 6.0).collect();
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        let expect_dot: f64 = row
            .iter()
            .zip(&w)
            .map(|(&v, &w)| (v as f64 - max).exp() / sum * w as f64)
            .sum();
        let mut p = row.clone();
        let mut running = (f32::NEG_INFINITY, 0f32);
        let mut acc = 0f32;
        let mut done = 0;
        let mut factors = Vec::new();
        for size in [7usize, 64, 100, 129] {
            let chunk = &mut p[done..done + size];
            let alpha = softmax_chunk_unnormalised(chunk, &mut running);
            factors.push(alpha);
            // Earlier chunks' probabilities and the weighted sum, rescaled.
            for v in &mut p[..done] {
                *v *= alpha;
            }
            acc = acc * alpha
                + p[done..done + size]
                    .iter()
                    .zip(&w[done..])
                    .map(|(p, w)| p * w)
                    .sum::<f32>();
            done += size;
        }
        assert_eq!(done, len);
        assert_eq!(
            factors[0], 0.0,
            "nothing accumulated before the first chunk"
        );
        assert!(
            factors[1..].iter().all(|&a| a > 0.0 && a < 1.0),
            "{factors:?}"
        );
        assert!((running.0 as f64 - max).abs() == 0.0);
        assert!((running.1 as f64 - sum).abs() < 1e-5 * sum);
        for (v, r) in p.iter().zip(&row) {
            let e = (*r as f64 - max).exp() / sum;
            let got = *v as f64 / running.1 as f64;
            assert!((got - e).abs() < 1e-6 * e.max(1e-3), "{got} vs {e}");
        }
        let got = acc as f64 / running.1 as f64;
        assert!(
            (got - expect_dot).abs() < 1e-5 * expect_dot.abs().max(1.0),
            "{got} vs {expect_dot}"
        );
    }

    /// Down the columns of a block inside a wider matrix: the same values as the row softmax
    /// of the transposed block (one full block of lanes and a partial one); values outside the
    /// block untouched.
    #[test]
    fn column_softmax_matches_row_softmax() {
        let (rows, cols, stride, first) = (7usize, 21usize, 30usize, 4usize);
        let data: Vec<f32> = (0..rows * stride)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.13)
            .collect();
        let mut got = data.clone();
        softmax_columns_in_place(&mut got[first..], stride, rows, cols);
        for j in 0..stride {
            let mut col: Vec<f32> = (0..rows).map(|i| data[i * stride + j]).collect();
            let inside = j >= first && j < first + cols;
            if inside {
                softmax_loop::<Separate>(&mut col);
            }
            for i in 0..rows {
                let (g, e) = (got[i * stride + j], col[i]);
                if inside {
                    assert!(
                        (g - e).abs() <= 1e-7 * e.max(1e-3),
                        "({i}, {j}): {g} vs {e}"
                    );
                } else {
                    assert_eq!(g, data[i * stride + j], "outside the block: ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn rel_softmax_matches_definition() {
        let (kh, kw) = (5usize, 7usize);
        let row: Vec<f32> = (0..kh * kw)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.31)
            .collect();
        let th: Vec<f32> = (0..kh).map(|i| i as f32 * 0.7 - 1.0).collect();
        let tw: Vec<f32> = (0..kw).map(|j| 2.0 - j as f32 * 0.45).collect();
        let biased: Vec<f64> = (0..kh * kw)
            .map(|k| ((row[k] + th[k / kw]) + tw[k % kw]) as f64)
            .collect();
        let max = biased.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = biased.iter().map(|v| (v - max).exp()).sum();
        for rel in [Some((&th[..], &tw[..])), None] {
            let mut fast = row.clone();
            let mut baseline = row.clone();
            let s_fast = rel_softmax_unnormalised(&mut fast, rel);
            let s_base = rel_softmax_loop::<Separate>(&mut baseline, rel);
            let (want, want_sum): (Vec<f64>, f64) = match rel {
                Some(_) => (biased.iter().map(|v| (v - max).exp()).collect(), sum),
                None => {
                    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                    let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
                    let s = e.iter().sum();
                    (e, s)
                }
            };
            for s in [s_fast, s_base] {
                assert!(
                    (s as f64 - want_sum).abs() < 1e-6 * want_sum,
                    "{s} vs {want_sum}"
                );
            }
            for ((f, b), e) in fast.iter().zip(&baseline).zip(&want) {
                assert!((*f as f64 - e).abs() < 1e-6 * e.max(1e-3), "{f} vs {e}");
                assert!((*b as f64 - e).abs() < 1e-6 * e.max(1e-3), "{b} vs {e}");
            }
        }
    }
}
