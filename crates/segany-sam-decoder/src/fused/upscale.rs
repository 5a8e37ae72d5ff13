//! Output upscaling and the hypernetwork product, one embedding row at a time.

use super::{values, LowRankKeys};
use crate::upscale::ConvTranspose2x2;
use candle_core::{bail, Result, Tensor};
use rayon::prelude::*;
use segany_core::nn::{
    bias_layer_norm_rows_in_place, gelu_erf_in_place, matmul_acc_into, matmul_few_rows_into,
    matmul_into, transpose_into, with_f32_values, zeroed_output, LayerNorm, MatRef, Scratch,
};

/// The mask decoder's output: `src (Bi, h·w, D)` (image tokens after the transformer, `Bi` 1
/// or B), `hyper (B, M, O₂)` (the hypernetwork outputs, one row per mask token) →
/// `masks (B, M, 4h, 4w)`, i.e. `hyper · gelu(up2(gelu(norm(up1(src)))))`.
///
/// A row of `w` embedding pixels becomes `4w` pixels after `up1` and `16w` after `up2`; each
/// stage works on those rows in whatever order the 2×2 taps produce them and only the final
/// mask values are put in place (`y = 4i + 2a + a'`, `x = 4j + 2b + b'`).
pub fn upscale_masks(
    src: &Tensor,
    (gh, gw): (usize, usize),
    up1: &ConvTranspose2x2,
    norm: &LayerNorm,
    up2: &ConvTranspose2x2,
    hyper: &Tensor,
) -> Result<Tensor> {
    let (bi, n, d) = src.dims3()?;
    let (b, m, o2) = hyper.dims3()?;
    if n != gh * gw || (bi != 1 && bi != b) || up2.out_channels() != o2 {
        bail!(
            "upscale: image {:?} for a {gh}×{gw} grid, hypernetwork output {:?}",
            src.dims(),
            hyper.dims()
        )
    }
    let w = stages(up1, norm, up2, d)?;
    let hv = values(hyper)?;
    let mut out = zeroed_output(b * m * 16 * gh * gw);
    with_f32_values(src, |x| {
        assemble(&mut out, b, m, (gh, gw), |bb| {
            let xb = if bi == 1 { 0 } else { bb };
            let x = &x[xb * n * d..(xb + 1) * n * d];
            let (hyper, w) = (&hv[bb * m * o2..(bb + 1) * m * o2], &w);
            Ok(move |i: usize| band(&x[i * gw * d..(i + 1) * gw * d], gw, d, hyper, m, w))
        })
    })?;
    Tensor::from_vec(out, (b, m, 4 * gh, 4 * gw), src.device())
}

/// The masks `(B, M, 4h, 4w)` of `b` prompts from their bands, into `out` (that many values,
/// each overwritten): `prompt(k)` prepares prompt `k` and returns what computes its band of
/// embedding row `i` (as [`band`] lays it out); the bands of a prompt run in parallel, then
/// are put in place.
fn assemble<P, F>(
    out: &mut [f32],
    b: usize,
    m: usize,
    (gh, gw): (usize, usize),
    prompt: P,
) -> Result<()>
where
    P: Fn(usize) -> Result<F> + Sync,
    F: Fn(usize) -> Result<Vec<f32>> + Sync,
{
    let (oh, ow) = (4 * gh, 4 * gw);
    if out.len() != b * m * oh * ow {
        bail!(
            "upscale: {} values for {b} × {m} masks of {oh}×{ow}",
            out.len()
        )
    }
    out.par_chunks_mut(m * oh * ow)
        .enumerate()
        .try_for_each(|(k, ob)| {
            let band_of = prompt(k)?;
            let bands = (0..gh)
                .into_par_iter()
                .map(&band_of)
                .collect::<Result<Vec<_>>>()?;
            for (i, z) in bands.iter().enumerate() {
                scatter(z, i, gw, m, ob, (oh, ow));
            }
            Ok::<_, candle_core::Error>(())
        })
}

/// [`upscale_masks`] for the prompts `select` of per-prompt image tokens in factored form
/// (`keys`, over the shared image `x (1, h·w, D)`): `hyper (P, M, O₂)` for the `P` selected
/// prompts → `(P, M, 4h, 4w)`.
///
/// `up1` is linear, so it goes through the factored form like any projection:
/// `up1(keys[p]) = c[p]·(x[p]·diag(G)·W₁) + Ã[p]·(R·W₁)` with `x·diag(G)·W₁` computed once for
/// all prompts — per prompt `N·rank·4·O₁` multiply-adds instead of `N·D·4·O₁` and no
/// materialised tokens.
///
/// The masks go into `out`, the `(P, M, 4h, 4w)` values row-major (resized to that length;
/// every value overwritten), so that callers who upscale batch after batch can reuse the
/// memory (fresh memory of that size, 48 MiB for 64 prompts of 3 masks at 256², is new pages
/// each time, which the kernel faults in and zeroes).
#[allow(clippy::too_many_arguments)]
pub fn upscale_factored_masks_into(
    keys: LowRankKeys,
    x: &Tensor,
    select: &[usize],
    (gh, gw): (usize, usize),
    up1: &ConvTranspose2x2,
    norm: &LayerNorm,
    up2: &ConvTranspose2x2,
    hyper: &Tensor,
    out: &mut Vec<f32>,
) -> Result<()> {
    let (n, d, r) = (keys.tokens(), keys.width(), keys.rank());
    let (b, m, o2) = hyper.dims3()?;
    let o1 = up1.out_channels();
    if n != gh * gw || x.dims() != [1, n, d] || b != select.len() || up2.out_channels() != o2 {
        bail!(
            "upscale (factored): image {:?} for {n} tokens on a {gh}×{gw} grid, {} prompts \
             selected, hypernetwork output {:?}",
            x.dims(),
            select.len(),
            hyper.dims()
        )
    }
    if let Some(bad) = select.iter().find(|&&i| i >= keys.batch()) {
        bail!("upscale (factored): prompt {bad} of {}", keys.batch())
    }
    let st = stages(up1, norm, up2, d)?;
    // Shared: x·diag(G)·W₁, (N, 4·O₁).
    let gain = keys.gain();
    let w1g: Vec<f32> = st
        .w1
        .chunks(4 * o1)
        .zip(&gain)
        .flat_map(|(row, g)| row.iter().map(move |w| w * g))
        .collect();
    let mut shared = vec![0f32; n * 4 * o1];
    with_f32_values(x, |x| {
        matmul_into(
            &mut shared,
            4 * o1,
            MatRef::row_major(x, n, d)?,
            MatRef::row_major(&w1g, d, 4 * o1)?,
            1.0,
            true,
        )
    })?;
    let hv = values(hyper)?;
    out.resize(b * m * 16 * gh * gw, 0.0);
    assemble(out, b, m, (gh, gw), |k| {
        let bb = select[k];
        let hyper = &hv[k * m * o2..(k + 1) * m * o2];
        // The basis through up1's weight, (rank, 4·O₁).
        let mut rw = vec![0f32; r * 4 * o1];
        matmul_into(
            &mut rw,
            4 * o1,
            MatRef::row_major(&keys.basis(bb), r, d)?,
            MatRef::row_major(&st.w1, d, 4 * o1)?,
            1.0,
            false,
        )?;
        let (shared, st) = (&shared, &st);
        Ok(move |i: usize| {
            let mut at = vec![0f32; r * gw];
            let mut c = vec![0f32; gw];
            keys.coefficients_t(bb, i * gw, &mut at, gw, &mut c);
            let mut y1 = Scratch::take(gw * 4 * o1);
            let rows = shared[i * gw * 4 * o1..(i + 1) * gw * 4 * o1].chunks(4 * o1);
            for ((y, row), c) in y1.chunks_mut(4 * o1).zip(rows).zip(&c) {
                for (y, v) in y.iter_mut().zip(row) {
                    *y = c * v;
                }
            }
            matmul_acc_into(
                &mut y1,
                4 * o1,
                MatRef::row_major(&at, r, gw)?.t(),
                MatRef::row_major(&rw, r, 4 * o1)?,
                1.0,
                false,
            )?;
            finish_band(&mut y1, gw, hyper, m, st)
        })
    })
}

/// The stages' weights as plain values, checked against the widths `d → O₁ → O₂`.
fn stages(
    up1: &ConvTranspose2x2,
    norm: &LayerNorm,
    up2: &ConvTranspose2x2,
    d: usize,
) -> Result<Stages> {
    let (o1, o2) = (up1.out_channels(), up2.out_channels());
    let st = Stages {
        w1: values(up1.matrix())?,
        b1: values(up1.bias())?,
        nw: values(norm.weight())?,
        nb: values(norm.bias())?,
        eps: norm.eps(),
        w2: values(up2.matrix())?,
        b2: values(up2.bias())?,
        o1,
        o2,
    };
    if st.w1.len() != d * 4 * o1 || st.w2.len() != o1 * 4 * o2 || st.nw.len() != o1 {
        bail!("upscale: weights do not match widths {d} → {o1} → {o2}")
    }
    Ok(st)
}

struct Stages {
    w1: Vec<f32>,
    b1: Vec<f32>,
    nw: Vec<f32>,
    nb: Vec<f32>,
    eps: f64,
    w2: Vec<f32>,
    b2: Vec<f32>,
    o1: usize,
    o2: usize,
}

/// One embedding row `x (w, D)` → the mask values of its `16w` output pixels, `(M, 16w)`, the
/// pixels ordered `(j, a, b, a', b')`.
fn band(x: &[f32], w: usize, d: usize, hyper: &[f32], m: usize, st: &Stages) -> Result<Vec<f32>> {
    let o1 = st.o1;
    // up1: (w × D)·(D × 4·O₁); the row of pixel j holds its 2×2 taps (a, b), O₁ channels each.
    let mut y1 = Scratch::take(w * 4 * o1);
    matmul_into(
        &mut y1,
        4 * o1,
        MatRef::row_major(x, w, d)?,
        MatRef::row_major(&st.w1, d, 4 * o1)?,
        1.0,
        false,
    )?;
    finish_band(&mut y1, w, hyper, m, st)
}

/// The rest of [`band`] from `y1 (w, 4·O₁)`, the row's product with `up1`'s weight (no bias).
fn finish_band(y1: &mut [f32], w: usize, hyper: &[f32], m: usize, st: &Stages) -> Result<Vec<f32>> {
    let (o1, o2) = (st.o1, st.o2);
    bias_layer_norm_rows_in_place(y1, &st.b1, &st.nw, &st.nb, st.eps);
    gelu_erf_in_place(y1);
    // up2: (4w × O₁)·(O₁ × 4·O₂).
    let mut y2 = Scratch::take(4 * w * 4 * o2);
    matmul_into(
        &mut y2,
        4 * o2,
        MatRef::row_major(y1, 4 * w, o1)?,
        MatRef::row_major(&st.w2, o1, 4 * o2)?,
        1.0,
        false,
    )?;
    for px in y2.chunks_mut(o2) {
        for (v, b) in px.iter_mut().zip(&st.b2) {
            *v += b;
        }
    }
    gelu_erf_in_place(&mut y2);
    // Mask values: (M × O₂)·(O₂ × 16w), mask-major, `(M, 16w)`. The pixels' channels are
    // transposed a block of pixels at a time, so that the few-rows product runs down the
    // pixels in full vectors (a gemm gathers the pixel-major values one by one to pack them:
    // 11.2 µs for a 1024-pixel band of three masks, against 5.2 µs this way, scratch timer).
    // Blocks of 128 pixels keep the transposed rows 512 B apart; 1024 pixels at once put them
    // 4 KiB apart, where all 32 share a few L1 cache sets (9.2 µs at 512 pixels).
    let n = 16 * w;
    let mut z = vec![0f32; m * n];
    let mut y2t = Scratch::take(HYPER_BLOCK.min(n) * o2);
    for (b, block) in y2.chunks(HYPER_BLOCK * o2).enumerate() {
        let px = block.len() / o2;
        transpose_into(block, &mut y2t[..px * o2], px, o2);
        matmul_few_rows_into(
            &mut z[b * HYPER_BLOCK..],
            n,
            (hyper, o2),
            (&y2t[..px * o2], px),
            (m, o2, px),
            1.0,
            false,
        )?;
    }
    Ok(z)
}

/// Pixels per block of the hypernetwork product in [`finish_band`].
const HYPER_BLOCK: usize = 128;

/// Puts band `i`'s values `z (M, 16w)` into the masks `ob (M, oh, ow)`.
fn scatter(z: &[f32], i: usize, w: usize, m: usize, ob: &mut [f32], (oh, ow): (usize, usize)) {
    for (k, zk) in z.chunks(16 * w).take(m).enumerate() {
        let mask = &mut ob[k * oh * ow..(k + 1) * oh * ow];
        for j in 0..w {
            for a in 0..2 {
                for b in 0..2 {
                    for a2 in 0..2 {
                        for b2 in 0..2 {
                            let r = (((j * 2 + a) * 2 + b) * 2 + a2) * 2 + b2;
                            let (y, x) = (4 * i + 2 * a + a2, 4 * j + 2 * b + b2);
                            mask[y * ow + x] = zk[r];
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::max_abs_diff;
    use super::*;
    use crate::test_util::{pseudo_random, randomise};
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use segany_core::nn::layer_norm;

    /// Same as the layers composed (channels-last transposed convolutions, norm, candle's
    /// GELU, batched product with the hypernetwork outputs), for one and several prompts and a
    /// shared image; rows of 80 output pixels (one block of the hypernetwork product) and of
    /// 176 (a full block and a partial one).
    #[test]
    fn matches_layer_composition() -> Result<()> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        ConvTranspose2x2::new(16, 8, vb.pp("up1"))?;
        ConvTranspose2x2::new(8, 4, vb.pp("up2"))?;
        randomise(&varmap, 0.5)?;
        let norm = layer_norm(8, 1e-6, vb.pp("norm"))?;
        // Built after the weights are set: the layers rearrange them at build time.
        let up1 = ConvTranspose2x2::new(16, 8, vb.pp("up1"))?;
        let up2 = ConvTranspose2x2::new(8, 4, vb.pp("up2"))?;
        for ((gh, gw), (b, bi)) in [
            ((3, 5), (1, 1)),
            ((3, 5), (2, 2)),
            ((3, 5), (2, 1)),
            ((2, 11), (2, 1)),
        ] {
            let src = pseudo_random(&[bi, gh * gw, 16], 1, 1.0)?;
            let hyper = pseudo_random(&[b, 3, 4], 2, 1.0)?;
            let fused = upscale_masks(&src, (gh, gw), &up1, &norm, &up2, &hyper)?;
            let up = src
                .broadcast_as((b, gh * gw, 16))?
                .reshape((b, gh, gw, 16))?
                .apply(&up1)?
                .apply(&norm)?
                .gelu_erf()?
                .apply(&up2)?
                .gelu_erf()?;
            let plain = hyper
                .matmul(&up.reshape((b, 16 * gh * gw, 4))?.transpose(1, 2)?)?
                .reshape((b, 3, 4 * gh, 4 * gw))?;
            let diff = max_abs_diff(&fused, &plain)?;
            assert!(diff < 2e-5, "{gh}×{gw}, B={b}, image batch {bi}: {diff}");
            let spread = plain.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(spread > 0.1, "masks too small to compare: {spread}");
        }
        Ok(())
    }
}
