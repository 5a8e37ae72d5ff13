//! Layer normalisation over the channels of an NCHW image (SAM's `LayerNorm2d`) in place of
//! its transposes.
//!
//! The composition permutes `(B, C, H, W)` to channels-last, normalises each pixel's channel
//! vector and permutes back: two strided copies of the whole tensor around the norm. Here each
//! band of pixels is normalised where it lies: the sums over the channels run down the rows of
//! the `(C, H·W)` plane, vectorised across the band's pixels. The arithmetic is the same two
//! passes (mean, then the mean square of the centred values) in f32; only the order of each
//! pixel's sum over the channels differs.

use super::disjoint::DisjointOut;
use super::simd::avx2_dispatch;
use rayon::prelude::*;

/// Pixels per band: the band's statistics and one channel row stay in L1.
const BAND: usize = 256;

/// Normalises each pixel's `w.len()` channels of the NCHW images in `x`
/// (`images × C × pixels` values) into `out`: `(x − mean)·inv·w + b` per pixel and channel,
/// with `inv = 1/sqrt(var + eps)`, images and bands of pixels in parallel.
///
/// Panics if `x` and `out` differ in length or do not hold whole images of `C × pixels`.
///
/// ```
/// use segany_core::nn::layer_norm_channels;
/// // One image, 2 channels × 3 pixels: each pixel's pair becomes (−1, 1) (eps 0).
/// let x = [1f32, 5.0, 0.0, 3.0, 1.0, 2.0];
/// let mut out = [0f32; 6];
/// layer_norm_channels(&x, &mut out, 3, &[1.0, 1.0], &[0.0, 0.0], 0.0);
/// assert_eq!(out, [-1.0, 1.0, -1.0, 1.0, -1.0, 1.0]);
/// ```
pub fn layer_norm_channels(
    x: &[f32],
    out: &mut [f32],
    pixels: usize,
    w: &[f32],
    b: &[f32],
    eps: f64,
) {
    let c = w.len();
    let plane = c * pixels;
    assert!(
        x.len() == out.len() && b.len() == c && plane > 0 && x.len().is_multiple_of(plane),
        "layer_norm_channels: {} input and {} output values for whole images of {c} channels \
         × {pixels} pixels ({} shifts)",
        x.len(),
        out.len(),
        b.len()
    );
    let bands = pixels.div_ceil(BAND);
    // Each task writes one band of every channel row of one image: disjoint, but strided.
    let base = DisjointOut::new(out);
    (0..x.len() / plane * bands)
        .into_par_iter()
        .for_each(|task| {
            let (image, band) = (task / bands, task % bands);
            let p0 = band * BAND;
            let len = BAND.min(pixels - p0);
            let src = &x[image * plane..(image + 1) * plane];
            let mut rows: Vec<&mut [f32]> = (0..c)
                .map(|ch| {
                    // SAFETY: this task alone touches the cells `image·plane + ch·pixels + p0
                    // ..+ len` of `out`; nothing else reads or writes them until the loop ends.
                    unsafe { base.piece(image * plane + ch * pixels + p0, len) }
                })
                .collect();
            norm_band(src, &mut rows, pixels, p0, w, b, eps as f32);
        });
}

avx2_dispatch! {
    /// One band of pixels from `p0` of one `(C, pixels)` plane into `dst`, the band's part of
    /// each channel row of the output.
    fn norm_band(
        src: &[f32],
        dst: &mut [&mut [f32]],
        pixels: usize,
        p0: usize,
        w: &[f32],
        b: &[f32],
        eps: f32,
    ) => norm_band_body
}

#[inline(always)]
fn norm_band_body(
    src: &[f32],
    dst: &mut [&mut [f32]],
    pixels: usize,
    p0: usize,
    w: &[f32],
    b: &[f32],
    eps: f32,
) {
    let c = w.len() as f32;
    let len = dst.first().map_or(0, |r| r.len());
    let mut mean = [0f32; BAND];
    let mut inv = [0f32; BAND];
    let (mean, inv) = (&mut mean[..len], &mut inv[..len]);
    let rows = || src.chunks_exact(pixels).map(|row| &row[p0..p0 + len]);
    for row in rows() {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    for m in mean.iter_mut() {
        *m /= c;
    }
    for row in rows() {
        for ((s, &v), &m) in inv.iter_mut().zip(row).zip(mean.iter()) {
            *s += (v - m) * (v - m);
        }
    }
    for s in inv.iter_mut() {
        *s = 1.0 / (*s / c + eps).sqrt();
    }
    for ((row, out), (&wc, &bc)) in rows().zip(dst.iter_mut()).zip(w.iter().zip(b)) {
        for (((o, &v), &m), &i) in out.iter_mut().zip(row).zip(mean.iter()).zip(inv.iter()) {
            *o = (v - m) * i * wc + bc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the definition in f64 per pixel: two images, a pixel count that leaves a
    /// partial band, channels with a large common offset (where a one-pass variance would
    /// lose the precision).
    #[test]
    fn matches_f64_definition() {
        let (images, c, pixels) = (2usize, 7usize, BAND + 37);
        let x: Vec<f32> = (0..images * c * pixels)
            .map(|i| 500.0 + ((i * 37 % 101) as f32 - 50.0) * 0.03)
            .collect();
        let w: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 * 0.1).collect();
        let b: Vec<f32> = (0..c).map(|i| i as f32 * 0.2 - 0.3).collect();
        let mut out = vec![f32::NAN; x.len()];
        layer_norm_channels(&x, &mut out, pixels, &w, &b, 1e-6);
        let mut worst = 0f64;
        for img in 0..images {
            for p in 0..pixels {
                let at = |ch: usize| x[(img * c + ch) * pixels + p] as f64;
                let mean = (0..c).map(at).sum::<f64>() / c as f64;
                let var = (0..c).map(|ch| (at(ch) - mean).powi(2)).sum::<f64>() / c as f64;
                for ch in 0..c {
                    let want = (at(ch) - mean) / (var + 1e-6).sqrt() * w[ch] as f64 + b[ch] as f64;
                    let got = out[(img * c + ch) * pixels + p] as f64;
                    worst = worst.max((got - want).abs());
                }
            }
        }
        // f32 rounding of the centred values near 500 (spacing 3e-5) against a spread of
        // ≈ 0.9: measured 8e-5.
        assert!(worst < 2e-4, "max |Δ| {worst}");
    }

    #[test]
    #[should_panic(expected = "whole")]
    fn refuses_partial_images() {
        let mut out = vec![0f32; 10];
        layer_norm_channels(&[0f32; 10], &mut out, 3, &[1.0; 2], &[0.0; 2], 1e-6);
    }
}
