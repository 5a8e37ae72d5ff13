//! MBConv on the CPU in bands of rows, the expanded maps never leaving the cache.
//!
//! At TinyViT's first stage an MBConv expands 64 channels to 256 at 256×256: each of its two
//! expanded maps (after the 1×1 expansion, after the depthwise 3×3) is 67 MB, written to
//! fresh memory and read back once. Here every thread walks down its own run of output rows a
//! band at a time: the expansion of the band's input rows (plus the row below) goes into a
//! small buffer that keeps the two rows the next band's depthwise taps read again, the
//! depthwise output of the band into another, and the projection with its bias, residual and
//! GELU writes the band's output. No row is expanded twice within a run; two neighbouring runs
//! both expand the row on either side of their boundary.
//!
//! The arithmetic per value is the one of the layer-by-layer kernels (the same products over
//! the same channels, the same depthwise tap order, the same polynomial GELU).

use super::depthwise::Depthwise;
use super::pointwise::{bias_epilogue, Pointwise};
use candle_core::{bail, Result};
use rayon::prelude::*;
use segany_core::nn::{gelu_erf_in_place, matmul_into, MatRef};

/// Output rows per band: with 256 channels expanded at width 256 a band's two buffers hold
/// `(8 + 2 + 8)·256·256` values (4.7 MB), in the shared L3 cache. (Bands of 4, 8 and 16
/// rows timed alike on TinyViT-5M; 32 was slower.)
const BAND_ROWS: usize = 8;

/// `gelu(conv3(gelu(dw(gelu(conv1(x))))) + x)` for `x (B, C, H, W)` (values, NCHW), with
/// `conv1 (E, C)`, a stride-1 "same" depthwise `dw` over `E` channels and `conv3 (C, E)`.
/// Returns the `(B, C, H, W)` values.
pub(crate) fn mbconv_bands(
    x: &[f32],
    (b, c, h, w): (usize, usize, usize, usize),
    conv1: Pointwise,
    dw: &Depthwise,
    conv3: Pointwise,
) -> Result<Vec<f32>> {
    let e = conv1.1.len();
    let k = dw.kernel;
    if x.len() != b * c * h * w
        || conv1.0.len() != e * c
        || conv3.1.len() != c
        || conv3.0.len() != c * e
        || dw.bias.len() != e
        || dw.stride != 1
        || k != 2 * dw.padding + 1
    {
        bail!(
            "MBConv bands: {} values for {b}×{c}×{h}×{w}, expansion to {e} channels, a {k}×{k} \
             depthwise of stride {} and padding {}",
            x.len(),
            dw.stride,
            dw.padding
        );
    }
    if x.is_empty() {
        return Ok(Vec::new());
    }
    let runs_per_image = rayon::current_num_threads()
        .div_ceil(b)
        .clamp(1, h.div_ceil(BAND_ROWS));
    let run_rows = h.div_ceil(runs_per_image);
    let runs: Vec<(usize, usize)> = (0..b)
        .flat_map(|img| (0..h).step_by(run_rows).map(move |r0| (img, r0)))
        .collect();
    let parts = runs
        .par_iter()
        .map(|&(img, r0)| {
            let r1 = (r0 + run_rows).min(h);
            let image = &x[img * c * h * w..(img + 1) * c * h * w];
            run(image, (c, h, w), (r0, r1), conv1, dw, conv3)
        })
        .collect::<Result<Vec<_>>>()?;
    // Put every run's `(C, rows·W)` block in place.
    let mut out = vec![0f32; b * c * h * w];
    out.par_chunks_mut(h * w)
        .enumerate()
        .for_each(|(plane, dst)| {
            let (img, ch) = (plane / c, plane % c);
            for (&(run_img, r0), part) in runs.iter().zip(&parts) {
                if run_img != img {
                    continue;
                }
                let n = part.len() / c;
                dst[r0 * w..r0 * w + n].copy_from_slice(&part[ch * n..(ch + 1) * n]);
            }
        });
    Ok(out)
}

/// Output rows `r0..r1` of one image `(C, H, W)`, as `(C, (r1 − r0)·W)` values.
fn run(
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    (r0, r1): (usize, usize),
    (w1, b1): Pointwise,
    dw: &Depthwise,
    (w3, b3): Pointwise,
) -> Result<Vec<f32>> {
    let e = b1.len();
    let p = dw.padding;
    // Expanded input rows held: the band's rows and `p` on either side (fewer at the edges).
    let cap = BAND_ROWS + 2 * p;
    let mut expanded = vec![0f32; e * cap * w];
    let mut depthwise = vec![0f32; e * BAND_ROWS * w];
    let mut out = vec![0f32; c * (r1 - r0) * w];
    let n_out = (r1 - r0) * w;
    // Expanded rows `lo..hi` are held, row `lo` at position 0 of each channel's block.
    let (mut lo, mut hi) = (r0.saturating_sub(p), r0.saturating_sub(p));
    for o0 in (r0..r1).step_by(BAND_ROWS) {
        let o1 = (o0 + BAND_ROWS).min(r1);
        let (need_lo, need_hi) = (o0.saturating_sub(p), (o1 + p).min(h));
        // Keep the rows the previous band expanded that this one reads again.
        let keep = hi.min(need_hi).max(need_lo) - need_lo;
        if keep > 0 && need_lo > lo {
            let shift = (need_lo - lo) * w;
            for block in expanded.chunks_exact_mut(cap * w) {
                block.copy_within(shift..shift + keep * w, 0);
            }
        }
        lo = need_lo;
        let from = need_lo + keep;
        // Expand rows `from..need_hi`: (E, C)·(C, rows·W) into the held block, bias, GELU.
        if need_hi > from {
            let rows = need_hi - from;
            let at = (from - lo) * w;
            matmul_into(
                &mut expanded[at..],
                cap * w,
                MatRef::row_major(w1, e, c)?,
                MatRef::new(&x[from * w..], c, rows * w, h * w, 1)?,
                1.0,
                false,
            )?;
            for (ch, block) in expanded.chunks_exact_mut(cap * w).enumerate() {
                bias_epilogue(&mut block[at..at + rows * w], b1[ch], None, true);
            }
        }
        hi = need_hi;
        // Depthwise over the band's output rows, bias and GELU.
        let band = (o1 - o0) * w;
        for (ch, (src, dst)) in expanded
            .chunks_exact(cap * w)
            .zip(depthwise.chunks_exact_mut(BAND_ROWS * w))
            .enumerate()
        {
            let dst = &mut dst[..band];
            dw.rows(ch, &src[..(hi - lo) * w], (lo, h, w), o0..o1, dst);
            gelu_erf_in_place(dst);
        }
        // Project back: (C, E)·(E, band) + bias + residual, GELU, into the run's output.
        let at = (o0 - r0) * w;
        matmul_into(
            &mut out[at..],
            n_out,
            MatRef::row_major(w3, c, e)?,
            MatRef::new(&depthwise, e, band, BAND_ROWS * w, 1)?,
            1.0,
            false,
        )?;
        for (ch, row) in out.chunks_exact_mut(n_out).enumerate() {
            let res = &x[ch * h * w + o0 * w..ch * h * w + o1 * w];
            bias_epilogue(&mut row[at..at + band], b3[ch], Some(res), true);
        }
    }
    Ok(out)
}
