//! Tokens attending to a per-prompt image, without projecting the image.

use super::values;
use crate::attention::{Attention, ProjectionValues};
use candle_core::{bail, Module, Result, Tensor};
use rayon::prelude::*;
use segany_core::nn::{matmul_into, softmax_columns_in_place, with_f32_values, MatRef, Scratch};

/// `attn(q = queries, k = image + pe, v = image)` for the two-way transformer's token-to-image
/// attentions after the first block: `queries (B, Nq, D)`, `image (Bi, N, D)` with `Bi` 1 or
/// B, `pe (1, N, D)` → `(B, Nq, D)`, as [`Attention::forward`] gives.
///
/// Per prompt and head, with `q` the projected queries: `q·K_hᵀ = (q_h·W_k,h)·(x+pe)ᵀ + q_h·b_k,h`,
/// whose last term is the same for every image token and so drops out of the softmax, and
/// `A_h·V_h = (A_h·x)·W_v,hᵀ + b_v,h` (softmax rows sum to one), so the image meets two
/// products with `heads·Nq` rows instead of two projections of all N tokens.
pub fn token_to_image(
    attn: &Attention,
    queries: &Tensor,
    image: &Tensor,
    pe: &Tensor,
) -> Result<Tensor> {
    let q = attn.q_proj().forward(queries)?;
    let (b, nq, di) = q.dims3()?;
    let (bi, n, d) = image.dims3()?;
    if (bi != 1 && bi != b) || pe.dims() != [1, n, d] {
        bail!(
            "token-to-image: queries {:?}, image {:?}, pe {:?}",
            q.dims(),
            image.dims(),
            pe.dims()
        )
    }
    let h = attn.num_heads();
    let c = di / h;
    let w = attn.values()?;
    if w.k.len() != di * d || w.v.len() != di * d {
        bail!("token-to-image: projections are not {di}×{d}")
    }
    let dims = Dims { h, c, nq, n, d };
    let qv = values(&q)?;
    let mut out = vec![0f32; b * nq * di];
    with_f32_values(image, |x| {
        with_f32_values(pe, |p| {
            let run = |bb: usize, o: &mut [f32], parallel: bool| {
                let xb = if bi == 1 { 0 } else { bb };
                one_prompt(
                    &qv[bb * nq * di..(bb + 1) * nq * di],
                    &x[xb * n * d..(xb + 1) * n * d],
                    p,
                    w,
                    &dims,
                    o,
                    parallel,
                )
            };
            if b > 1 {
                // Prompts in parallel, each product serial.
                out.par_chunks_mut(nq * di)
                    .enumerate()
                    .try_for_each(|(bb, o)| run(bb, o, false))
            } else {
                out.chunks_mut(nq * di)
                    .enumerate()
                    .try_for_each(|(bb, o)| run(bb, o, true))
            }
        })
    })?;
    let out = Tensor::from_vec(out, (b, nq, di), image.device())?;
    attn.out_proj().forward(&out)
}

struct Dims {
    h: usize,
    c: usize,
    nq: usize,
    n: usize,
    d: usize,
}

/// One prompt: `q (Nq, Di)`, `x (N, D)`, `p (N, D)` → `o (Nq, Di)` (before `out_proj`).
fn one_prompt(
    q: &[f32],
    x: &[f32],
    p: &[f32],
    w: &ProjectionValues,
    dims: &Dims,
    o: &mut [f32],
    parallel: bool,
) -> Result<()> {
    let Dims { h, c, nq, n, d } = *dims;
    let di = h * c;
    let r = h * nq;
    if r == 0 {
        // No heads or no queries: `o` holds no value.
        return Ok(());
    }
    // m: row (head, token) = q_h[t] · W_k,h (the token's query mapped back to image width).
    let mut m = vec![0f32; r * d];
    for hh in 0..h {
        let qh = MatRef::new(&q[hh * c..], nq, c, di, 1)?;
        let wkh = MatRef::row_major(&w.k[hh * c * d..(hh + 1) * c * d], c, d)?;
        matmul_into(&mut m[hh * nq * d..], d, qh, wkh, 1.0, false)?;
    }
    let scale = 1.0 / (c as f32).sqrt();
    let st = scores(x, p, &m, (n, d), scale, parallel)?;
    // Values: a single prompt splits its heads over the threads; several prompts already run
    // in parallel.
    let threads = if parallel {
        rayon::current_num_threads().clamp(1, h.max(1))
    } else {
        1
    };
    let per_group = h.div_ceil(threads).max(1);
    let groups = h.div_ceil(per_group);
    let group = |g: usize| -> Result<Vec<f32>> {
        let rows = (g * per_group * nq)..((g + 1) * per_group).min(h) * nq;
        let mut z = vec![0f32; rows.len() * d];
        matmul_into(
            &mut z,
            d,
            MatRef::new(&st[rows.start..], n, rows.len(), r, 1)?.t(),
            MatRef::row_major(x, n, d)?,
            1.0,
            false,
        )?;
        Ok(z)
    };
    let z: Vec<f32> = if groups > 1 {
        (0..groups)
            .into_par_iter()
            .map(group)
            .collect::<Result<Vec<_>>>()?
            .concat()
    } else {
        group(0)?
    };
    for hh in 0..h {
        let zh = MatRef::row_major(&z[hh * nq * d..(hh + 1) * nq * d], nq, d)?;
        let wvh = MatRef::row_major(&w.v[hh * c * d..(hh + 1) * c * d], c, d)?.t();
        matmul_into(&mut o[hh * c..], di, zh, wvh, 1.0, false)?;
    }
    for row in o.chunks_mut(di) {
        for (v, b) in row.iter_mut().zip(&w.bv) {
            *v += b;
        }
    }
    Ok(())
}

/// The attention probabilities `softmax(m·(x+pe)ᵀ·scale)` of the `r` rows of `m (r, d)`,
/// transposed: image `x (n, d)` and positions `p (n, d)` → `(n, r)`, each column a
/// distribution over the image tokens.
///
/// The scores are computed one row per image token (`sᵀ = (x+pe)·mᵀ`), with the softmax down
/// the columns. Written this way the gemm streams the image tokens as they are stored;
/// `s = m·(x+pe)ᵀ` instead makes it gather the image into packed panels first, a strided copy
/// that cost about a third as much as the product. `x + pe` is formed [`XP_TILE`] tokens at a
/// time in a scratch buffer just before their product (the tiles split over the threads when
/// `parallel`), rather than as a whole new image per attention, 4 MiB for SAM, written out
/// and read back.
fn scores(
    x: &[f32],
    p: &[f32],
    m: &[f32],
    (n, d): (usize, usize),
    scale: f32,
    parallel: bool,
) -> Result<Vec<f32>> {
    let r = m.len() / d.max(1);
    if x.len() != n * d || p.len() != n * d || m.len() != r * d {
        bail!(
            "token-to-image: {} image and {} position values for {n} × {d}, {} query values",
            x.len(),
            p.len(),
            m.len()
        )
    }
    if r == 0 {
        return Ok(Vec::new());
    }
    let mut st = vec![0f32; n * r];
    let tile = |(t, st): (usize, &mut [f32])| -> Result<()> {
        let rows = st.len() / r.max(1);
        let span = t * XP_TILE * d..(t * XP_TILE + rows) * d;
        let mut xp = Scratch::take(rows * d);
        for ((v, a), b) in xp.iter_mut().zip(&x[span.clone()]).zip(&p[span]) {
            *v = a + b;
        }
        matmul_into(
            st,
            r,
            MatRef::row_major(&xp, rows, d)?,
            MatRef::row_major(m, r, d)?.t(),
            scale,
            false,
        )
    };
    if parallel {
        st.par_chunks_mut(XP_TILE * r)
            .enumerate()
            .try_for_each(tile)?;
    } else {
        st.chunks_mut(XP_TILE * r).enumerate().try_for_each(tile)?;
    }
    softmax_columns_in_place(&mut st, r, n, r);
    Ok(st)
}

/// Image tokens per block of `x + pe` in [`scores`]: 256 KiB at SAM's width, within a
/// core's L2 cache.
const XP_TILE: usize = 256;

#[cfg(test)]
mod tests {
    use super::super::max_abs_diff;
    use super::*;
    use crate::test_util::{pseudo_random, randomise};
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};

    fn layer() -> Result<Attention> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        Attention::new(32, 4, 2, vb.pp("attn"))?;
        randomise(&varmap, 0.4)?;
        // Built after the weights are set: `Linear` copies its weight at build time.
        Attention::new(32, 4, 2, vb.pp("attn"))
    }

    /// Same as projecting the image and attending, for one prompt (parallel products), several
    /// prompts with their own images, and several prompts sharing one image; images of one
    /// partial block of `x + pe` and of two full blocks and a partial one.
    #[test]
    fn matches_attention_forward() -> Result<()> {
        let attn = layer()?;
        for n in [48, 2 * XP_TILE + 88] {
            let pe = pseudo_random(&[1, n, 32], 3, 1.0)?;
            for (b, bi) in [(1, 1), (3, 3), (3, 1)] {
                let queries = pseudo_random(&[b, 5, 32], 1, 1.0)?;
                let image = pseudo_random(&[bi, n, 32], 2, 1.0)?;
                let fused = token_to_image(&attn, &queries, &image, &pe)?;
                let keys = image.broadcast_add(&pe)?;
                let wide = |t: &Tensor| t.broadcast_as((b, n, 32))?.contiguous();
                let plain = attn.forward(&queries, &wide(&keys)?, &wide(&image)?)?;
                let diff = max_abs_diff(&fused, &plain)?;
                assert!(diff < 2e-5, "{n} tokens, B={b}, image batch {bi}: {diff}");
                let scale = plain.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(scale > 0.1, "outputs too small to compare: {scale}");
            }
        }
        Ok(())
    }
}
