//! The image attending to the tokens, residual and layer norm, in row tiles.

use super::norm_stats::{NormStats, PromptStats};
use super::tile_scores::{factored_keys, tile_scores, TileQueries};
use super::{values, BufferPool, ImageUpdate, LowRankKeys, SharedQueries};
use crate::attention::Attention;
use candle_core::{bail, Module, Result, Tensor};
use rayon::prelude::*;
use segany_core::nn::{
    dot, matmul_into, residual_layer_norm_rows, softmax_columns_in_place, transpose_into,
    with_f32_values, zeroed_output, LayerNorm, MatRef, Scratch,
};

/// Image rows per tile: the tile's scores, update and residual stay in cache.
pub(super) const TILE_ROWS: usize = 256;

/// `norm(image + attn(q = image + pe, k = tokens_k, v = tokens_v))`, the image side of a
/// two-way block: `image (Bi, N, D)` with `Bi` 1 (one image shared by every prompt) or B,
/// `pe (1, N, D)`, `tokens_k`, `tokens_v (B, Nt, D)` → `(B, N, D)`.
///
/// `shared_queries`, `(Bi, heads, N, c)`, is `q_proj(image + pe)` split into heads when the
/// caller already has it (the first block, whose image is the same for every prompt).
/// Otherwise, per prompt and head, `Q_h·k_hᵀ = (x+pe)·(W_q,hᵀ·k_hᵀ) + b_q,h·k_hᵀ`. The update
/// `out_proj(concat_h A_h·v_h) = Σ_h A_h·(v_h·W_o,hᵀ) + b_o`: a product with `heads·Nt` rows.
pub fn image_to_token(
    attn: &Attention,
    norm: &LayerNorm,
    image: &Tensor,
    pe: &Tensor,
    shared_queries: Option<&Tensor>,
    tokens_k: &Tensor,
    tokens_v: &Tensor,
) -> Result<Tensor> {
    let queries = match shared_queries {
        Some(q) => ImageQueries::Shared(q),
        None => ImageQueries::Project,
    };
    let (_, n, d) = image.dims3()?;
    let b = tokens_k.dim(0)?;
    let out = zeroed_output(b * n * d);
    let (out, _) = run(
        attn,
        norm,
        (image, Residual::Dense),
        pe,
        queries,
        (tokens_k, tokens_v),
        Some(out),
        None,
    )?;
    match out {
        Some(out) => Tensor::from_vec(out, (b, n, d), image.device()),
        None => bail!("image-to-token: output not written"),
    }
}

/// [`image_to_token`], also returning the update in factored form ([`ImageUpdate`]): what
/// [`super::LowRankKeys`] needs to express the new image tokens through the old ones. The new
/// tokens `(B, N, D)` are written to `out` when given (any contents; every value is
/// overwritten) and returned, else only recorded that way. The probabilities go to `probs`
/// (`B·N·heads·Nt` values, overwritten); the update gives it back to `pool` when dropped.
/// (The decoder uses [`image_to_token_factored`]; the tests check the records against this
/// one's, made from the tokens themselves.)
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
pub fn image_to_token_tracked(
    attn: &Attention,
    norm: &LayerNorm,
    image: &Tensor,
    pe: &Tensor,
    queries: ImageQueries,
    (tokens_k, tokens_v): (&Tensor, &Tensor),
    out: Option<Vec<f32>>,
    (probs, pool): (Vec<f32>, Option<&BufferPool>),
) -> Result<(Option<Vec<f32>>, ImageUpdate)> {
    let (out, update) = run(
        attn,
        norm,
        (image, Residual::Dense),
        pe,
        queries,
        (tokens_k, tokens_v),
        out,
        Some(probs),
    )?;
    Ok((out, pooled(update, pool)?))
}

/// The record ([`ImageUpdate`]) of an image-to-token step on image tokens kept factored over
/// the shared image `image (1, N, D)`: the image itself (`earlier` `None`, the first block)
/// or the earlier blocks' updates over it. The norm's statistics come from the factored form
/// (`norm_stats`) and no token is materialised. The probabilities go to `probs`
/// (`B·N·heads·Nt` values, overwritten); the update gives it back to `pool` when dropped.
#[allow(clippy::too_many_arguments)]
pub fn image_to_token_factored(
    attn: &Attention,
    norm: &LayerNorm,
    image: &Tensor,
    earlier: Option<LowRankKeys>,
    pe: &Tensor,
    queries: ImageQueries,
    (tokens_k, tokens_v): (&Tensor, &Tensor),
    (probs, pool): (Vec<f32>, Option<&BufferPool>),
) -> Result<ImageUpdate> {
    let (_, update) = run(
        attn,
        norm,
        (image, Residual::Factored(earlier)),
        pe,
        queries,
        (tokens_k, tokens_v),
        None,
        Some(probs),
    )?;
    pooled(update, pool)
}

/// The update `run` recorded, giving its probabilities back to `pool` when dropped.
fn pooled(update: Option<ImageUpdate>, pool: Option<&BufferPool>) -> Result<ImageUpdate> {
    match update {
        Some(mut u) => {
            u.pool = pool.cloned();
            Ok(u)
        }
        None => bail!("image-to-token: update not recorded"),
    }
}

/// What the residual and norm of a step read.
#[derive(Clone, Copy)]
enum Residual<'a> {
    /// The image tokens given.
    Dense,
    /// The earlier blocks' updates over the shared image given (`None`: the image itself);
    /// only the norm's statistics are computed.
    Factored(Option<LowRankKeys<'a>>),
}

/// Where an image-to-token step gets the image tokens' queries from.
#[derive(Clone, Copy)]
pub enum ImageQueries<'a> {
    /// Projects `image + pe` itself (folded into the token keys, per prompt).
    Project,
    /// `q_proj(image + pe)` already split into heads, `(Bi, heads, N, c)` (the first block).
    Shared(&'a Tensor),
    /// The image tokens are the factored `keys` over the shared image that the queries were
    /// projected from: `q_proj(keys + pe) = c ⊙ Sq + Pq + Ã·(R·W_qᵀ)`.
    Factored(&'a SharedQueries, LowRankKeys<'a>),
}

/// Per tile of one prompt: where its normalised rows go (`None`: nowhere, only the record is
/// kept) and where the probabilities `(heads·Nt, rows)` and norm statistics go (`None`: not
/// recorded).
struct TileOut<'a> {
    o: Option<&'a mut [f32]>,
    track: Option<TileTrack<'a>>,
    /// With factored image tokens, what their norm statistics come from (`o` is `None`).
    stats: Option<FactoredNorm<'a>>,
}

/// One prompt's part of a factored step's norm statistics.
struct FactoredNorm<'a> {
    stats: &'a NormStats<'a>,
    prompt: &'a PromptStats,
    /// The prompt's token values `(Nt, heads·c)`.
    v: &'a [f32],
    bb: usize,
}

/// Per tile: where the probabilities and norm statistics go.
struct TileTrack<'a> {
    a: &'a mut [f32],
    mean: &'a mut [f32],
    inv: &'a mut [f32],
}

#[allow(clippy::too_many_arguments)]
fn run(
    attn: &Attention,
    norm: &LayerNorm,
    (image, residual): (&Tensor, Residual),
    pe: &Tensor,
    queries: ImageQueries,
    (tokens_k, tokens_v): (&Tensor, &Tensor),
    out: Option<Vec<f32>>,
    probs: Option<Vec<f32>>,
) -> Result<(Option<Vec<f32>>, Option<ImageUpdate>)> {
    let shared_queries = match queries {
        ImageQueries::Shared(q) => Some(q),
        _ => None,
    };
    let kp = attn.k_proj().forward(tokens_k)?;
    let vp = attn.v_proj().forward(tokens_v)?;
    let (b, nt, di) = kp.dims3()?;
    let (bi, n, d) = image.dims3()?;
    let h = attn.num_heads();
    let c = di / h;
    if (bi != 1 && bi != b) || pe.dims() != [1, n, d] || vp.dims() != [b, nt, di] {
        bail!(
            "image-to-token: image {:?}, pe {:?}, token keys {:?}, values {:?}",
            (bi, n, d),
            pe.dims(),
            kp.dims(),
            vp.dims()
        )
    }
    if let Some(q) = shared_queries {
        if q.dims() != [bi, h, n, c] {
            bail!(
                "image-to-token: shared queries {:?} for image {:?}",
                q.dims(),
                (bi, n, d)
            )
        }
    }
    let pv = attn.values()?;
    let (wq, bq, wo, bo) = (&pv.q[..], &pv.bq[..], &pv.o[..], &pv.bo[..]);
    let (nw, nb) = (values(norm.weight())?, values(norm.bias())?);
    if wq.len() != di * d || wo.len() != d * di || nw.len() != d || nb.len() != d {
        bail!("image-to-token: weights do not match width {d} / {di}")
    }
    let (kv, vv) = (values(&kp)?, values(&vp)?);
    let dims = Dims { h, c, nt, d };
    let factored = match queries {
        ImageQueries::Factored(sq, keys) => {
            if (sq.n, sq.di) != (n, di) || (keys.batch(), keys.tokens(), keys.width()) != (b, n, d)
            {
                bail!(
                    "image-to-token: factored queries of {} tokens × {}, {} prompts of {} \
                     tokens × {}, for image {:?} and keys {:?}",
                    sq.n,
                    sq.di,
                    keys.batch(),
                    keys.tokens(),
                    keys.width(),
                    (bi, n, d),
                    kp.dims()
                )
            }
            Some((sq, keys))
        }
        _ => None,
    };
    let fold = matches!(queries, ImageQueries::Project);
    // Per prompt: r = the values through out_proj (heads·Nt × D); g, g0 = the keys pulled back
    // through q_proj (D × heads·Nt, and the bias term), when the queries are not shared.
    let projector = match &factored {
        Some((_, keys)) => Some(keys.projector(wq)?),
        None => None,
    };
    let per_prompt: Vec<PromptSide> = (0..b)
        .map(|bb| {
            let k = &kv[bb * nt * di..(bb + 1) * nt * di];
            let v = &vv[bb * nt * di..(bb + 1) * nt * di];
            let mut side = prompt_side(k, v, wq, bq, wo, &dims, fold)?;
            if let Some(p) = &projector {
                side.fk = factored_keys(p, bb, k, &dims)?;
            }
            Ok(side)
        })
        .collect::<Result<_>>()?;
    let scale = 1.0 / (c as f32).sqrt();
    let hn = h * nt;
    let write = out.is_some();
    let track = probs.is_some();
    let stats = match residual {
        Residual::Dense => None,
        Residual::Factored(earlier) => {
            if bi != 1 || write || !track {
                bail!(
                    "image-to-token: factored tokens need one shared image ({bi} given), \
                     a record and no output"
                )
            }
            if earlier.is_some() && fold {
                bail!("image-to-token: queries of factored tokens projected from the image")
            }
            let stats = with_f32_values(image, |x| {
                NormStats::new(x, earlier, (wo, bo), (h, nt), norm.eps())
            })?;
            Some(stats)
        }
    };
    let mut out = out.unwrap_or_default();
    let mut a = probs.unwrap_or_default();
    if (write && out.len() != b * n * d) || (track && a.len() != b * n * hn) {
        bail!(
            "image-to-token: buffers of {} and {} values for {b} prompts × {n} tokens × {d} \
             ({hn} probabilities each)",
            out.len(),
            a.len()
        )
    }
    let (mut mean, mut inv) = if track {
        (vec![0f32; b * n], vec![0f32; b * n])
    } else {
        (Vec::new(), Vec::new())
    };
    // Per prompt, per tile: where its outputs go (if anywhere) and its record (if any).
    let tiles = n.div_ceil(TILE_ROWS);
    let mut per_tile: Vec<Vec<TileOut>> = (0..b)
        .map(|_| {
            (0..tiles)
                .map(|_| TileOut {
                    o: None,
                    track: None,
                    stats: None,
                })
                .collect()
        })
        .collect();
    for (pt, ob) in per_tile.iter_mut().zip(out.chunks_mut(n * d)) {
        for (t, o) in pt.iter_mut().zip(ob.chunks_mut(TILE_ROWS * d)) {
            t.o = Some(o);
        }
    }
    for (pt, ((ab, mb), ib)) in per_tile.iter_mut().zip(
        a.chunks_mut(n * hn)
            .zip(mean.chunks_mut(n))
            .zip(inv.chunks_mut(n)),
    ) {
        let tracks = ab
            .chunks_mut(TILE_ROWS * hn)
            .zip(mb.chunks_mut(TILE_ROWS))
            .zip(ib.chunks_mut(TILE_ROWS));
        for (t, ((a, mean), inv)) in pt.iter_mut().zip(tracks) {
            t.track = Some(TileTrack { a, mean, inv });
        }
    }
    let mut run = |shared_q: Option<&[f32]>| -> Result<()> {
        with_f32_values(image, |x| {
            with_f32_values(pe, |p| {
                std::mem::take(&mut per_tile)
                    .into_par_iter()
                    .enumerate()
                    .try_for_each(|(bb, outs)| {
                        let xb = if bi == 1 { 0 } else { bb };
                        let x = &x[xb * n * d..(xb + 1) * n * d];
                        let side = &per_prompt[bb];
                        let k = &kv[bb * nt * di..(bb + 1) * nt * di];
                        let shared_q = shared_q.map(|q| &q[xb * h * n * c..(xb + 1) * h * n * c]);
                        let norm = (&nw[..], &nb[..], norm.eps());
                        let prompt_stats = match &stats {
                            Some(s) => Some((s, s.prompt(bb, &side.r)?)),
                            None => None,
                        };
                        let v = &vv[bb * nt * di..(bb + 1) * nt * di];
                        outs.into_par_iter().enumerate().try_for_each(|(ti, out)| {
                            let r0 = ti * TILE_ROWS;
                            let rows = TILE_ROWS.min(n - r0);
                            let tile = Tile {
                                x: &x[r0 * d..(r0 + rows) * d],
                                p: &p[r0 * d..(r0 + rows) * d],
                                r0,
                                rows,
                            };
                            let scores = match (shared_q, &factored) {
                                (Some(q), _) => TileScores::Shared(TileQueries::Shared(q), k),
                                (None, Some((sq, keys))) => {
                                    TileScores::Shared(TileQueries::Factored(sq, keys, bb), k)
                                }
                                (None, None) => TileScores::Fold,
                            };
                            let stats = prompt_stats.as_ref().map(|(s, ps)| FactoredNorm {
                                stats: s,
                                prompt: ps,
                                v,
                                bb,
                            });
                            let out = TileOut { stats, ..out };
                            one_tile(&tile, scores, side, &dims, n, scale, bo, norm, out)
                        })
                    })
            })
        })
    };
    match shared_queries {
        Some(q) => {
            // Per image, head and tile of image tokens, `(rows, c)` → `(c, rows)` in place:
            // the tokens' keys then score against contiguous rows of image tokens.
            let qt = with_f32_values(q, |q| {
                let mut qt = vec![0f32; q.len()];
                for (src, dst) in q.chunks(n * c).zip(qt.chunks_mut(n * c)) {
                    for r0 in (0..n).step_by(TILE_ROWS) {
                        let rows = TILE_ROWS.min(n - r0);
                        let span = r0 * c..(r0 + rows) * c;
                        transpose_into(&src[span.clone()], &mut dst[span], rows, c);
                    }
                }
                Ok::<_, candle_core::Error>(qt)
            })?;
            run(Some(&qt))?
        }
        None => run(None)?,
    }
    let out = write.then_some(out);
    let update = track.then(|| ImageUpdate {
        b,
        n,
        d,
        hn,
        a,
        u: per_prompt.into_iter().flat_map(|s| s.r).collect(),
        bias: bo.to_vec(),
        mean,
        inv,
        gamma: nw,
        beta: nb,
        v: vv,
        wo: wo.to_vec(),
        heads: h,
        pool: None,
    });
    Ok((out, update))
}

pub(super) struct Dims {
    pub(super) h: usize,
    pub(super) c: usize,
    pub(super) nt: usize,
    pub(super) d: usize,
}

pub(super) struct PromptSide {
    /// `(heads·Nt, D)`: `v_h·W_o,hᵀ` stacked over heads.
    pub(super) r: Vec<f32>,
    /// `(D, heads·Nt)`: `W_q,hᵀ·k_hᵀ` side by side (empty with shared queries).
    pub(super) g: Vec<f32>,
    /// `(heads·Nt)`: `b_q,h·k_h[t]` (empty with shared queries).
    pub(super) g0: Vec<f32>,
    /// `(rank, heads·Nt)`: with factored queries, each basis row through `q_proj`'s weight
    /// against each token key (empty otherwise).
    pub(super) fk: Vec<f32>,
}

/// Where one tile's scores come from (see [`ImageQueries`]).
enum TileScores<'a> {
    /// Queries from shared projections ([`tile_scores`]), and the prompt's token keys.
    Shared(TileQueries<'a>, &'a [f32]),
    /// `(x + pe)·g + g0` with the prompt side's folded keys.
    Fold,
}

fn prompt_side(
    k: &[f32],
    v: &[f32],
    wq: &[f32],
    bq: &[f32],
    wo: &[f32],
    dims: &Dims,
    fold_queries: bool,
) -> Result<PromptSide> {
    let Dims { h, c, nt, d } = *dims;
    let di = h * c;
    let hn = h * nt;
    let mut r = vec![0f32; hn * d];
    for hh in 0..h {
        let vh = MatRef::new(&v[hh * c..], nt, c, di, 1)?;
        // W_o is (D, Di): its columns of head hh, transposed, are (c × D).
        let woh = MatRef::new(&wo[hh * c..], c, d, 1, di)?;
        matmul_into(&mut r[hh * nt * d..], d, vh, woh, 1.0, false)?;
    }
    let (mut g, mut g0) = (Vec::new(), Vec::new());
    if fold_queries {
        g = vec![0f32; d * hn];
        g0 = vec![0f32; hn];
        for hh in 0..h {
            let wqh = MatRef::row_major(&wq[hh * c * d..(hh + 1) * c * d], c, d)?.t();
            let kh = MatRef::new(&k[hh * c..], nt, c, di, 1)?.t();
            matmul_into(&mut g[hh * nt..], hn, wqh, kh, 1.0, false)?;
            for t in 0..nt {
                g0[hh * nt + t] = dot(
                    &bq[hh * c..(hh + 1) * c],
                    &k[t * di + hh * c..t * di + (hh + 1) * c],
                );
            }
        }
    }
    Ok(PromptSide {
        r,
        g,
        g0,
        fk: Vec::new(),
    })
}

struct Tile<'a> {
    x: &'a [f32],
    p: &'a [f32],
    r0: usize,
    rows: usize,
}

segany_core::avx2_dispatch! {
    /// One tile of image rows of one prompt: scores against the tokens (token-major, so that
    /// the softmax over the tokens runs across the image rows), softmax per head, the update,
    /// the residual and the norm, written to `o (rows, D)`; the probabilities and the norm's
    /// statistics to the record when there is one. Built for the CPU's vector width.
    #[allow(clippy::too_many_arguments)]
    fn one_tile(
        tile: &Tile,
        scores: TileScores,
        side: &PromptSide,
        dims: &Dims,
        n: usize,
        scale: f32,
        bo: &[f32],
        norm: (&[f32], &[f32], f64),
        out: TileOut,
    ) -> Result<()> => one_tile_body
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn one_tile_body(
    tile: &Tile,
    scores: TileScores,
    side: &PromptSide,
    dims: &Dims,
    n: usize,
    scale: f32,
    bo: &[f32],
    (nw, nb, eps): (&[f32], &[f32], f64),
    out: TileOut,
) -> Result<()> {
    let TileOut { o, track, stats } = out;
    let Dims { h, nt, d, .. } = *dims;
    let (rows, hn) = (tile.rows, h * nt);
    // The scores, then the probabilities, `(heads·Nt, rows)` with rows `ld` apart (padded:
    // rows a power of two apart would share cache sets when read down a column). Every value
    // used is overwritten below.
    let ld = rows + 16;
    let mut s = Scratch::take(hn * ld);
    match scores {
        TileScores::Shared(queries, k) => tile_scores(
            &mut s,
            ld,
            queries,
            k,
            side,
            dims,
            (n, tile.r0, rows),
            scale,
        )?,
        TileScores::Fold => {
            // The tile's (rows × D) queries against the (D × heads·Nt) folded keys, computed
            // image-token-major and then transposed into `s`: the gemm reads the queries as
            // stored, where `s = gᵀ·xpᵀ` directly makes it pack the tile's queries column by
            // column first (a strided gather as costly as a third of the product).
            let mut xp = Scratch::take(rows * d);
            for ((v, a), b) in xp.iter_mut().zip(tile.x).zip(tile.p) {
                *v = a + b;
            }
            let mut st = Scratch::take(rows * hn);
            matmul_into(
                &mut st,
                hn,
                MatRef::row_major(&xp, rows, d)?,
                MatRef::row_major(&side.g, d, hn)?,
                scale,
                false,
            )?;
            for (j, (row, g0)) in s.chunks_mut(ld).zip(&side.g0).enumerate() {
                let off = g0 * scale;
                for (v, src) in row[..rows].iter_mut().zip(st[j..].iter().step_by(hn)) {
                    *v = src + off;
                }
            }
        }
    }
    for head in s.chunks_mut(nt * ld) {
        softmax_columns_in_place(head, ld, nt, rows);
    }
    if let Some(f) = stats {
        let Some(TileTrack { a, mean, inv }) = track else {
            bail!("image-to-token: factored tokens without a record")
        };
        record_probabilities(&s, ld, hn, a);
        return f
            .stats
            .tile(f.bb, f.prompt, f.v, tile.r0, (&s, ld), mean, inv);
    }
    // The update goes to a scratch tile (in cache; overwritten by the product below), the
    // normalised rows to `o` if anywhere (unwritten rows need only the norm's statistics).
    let mut u = Scratch::take(rows * d);
    // The update: (rows × heads·Nt), read transposed from the probabilities, times
    // (heads·Nt × D).
    matmul_into(
        &mut u,
        d,
        MatRef::new(&s, rows, hn, 1, ld)?,
        MatRef::row_major(&side.r, hn, d)?,
        1.0,
        false,
    )?;
    let stats = match track {
        Some(TileTrack { a, mean, inv }) => {
            record_probabilities(&s, ld, hn, a);
            Some((mean, inv))
        }
        None => None,
    };
    let (mean, inv) = match stats {
        Some((m, i)) => (m, i),
        None => (&mut [][..], &mut [][..]),
    };
    // Unwritten tokens need only the norm's statistics.
    let o = o.unwrap_or(&mut []);
    residual_layer_norm_rows(&u, tile.x, bo, nw, nb, eps, o, mean, inv);
    Ok(())
}

/// The probabilities `s (heads·Nt, rows)`, rows `ld` apart, into the record's tile
/// `a (heads·Nt, rows)` (see [`ImageUpdate`]).
#[inline(always)]
fn record_probabilities(s: &[f32], ld: usize, hn: usize, a: &mut [f32]) {
    let rows = a.len() / hn.max(1);
    for (dst, src) in a.chunks_mut(rows).zip(s.chunks(ld)) {
        dst.copy_from_slice(&src[..rows]);
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

    /// Same as `norm(image + attn.forward(image + pe, k, v))` for one prompt, several prompts
    /// with their own images, several sharing one image, and shared projected queries; the
    /// image has more rows than one tile and a partial last tile.
    #[test]
    fn matches_attention_residual_norm() -> Result<()> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        Attention::new(32, 4, 2, vb.pp("attn"))?;
        layer_norm(32, 1e-5, vb.pp("norm"))?;
        randomise(&varmap, 0.4)?;
        // Built after the weights are set: `Linear` copies its weight at build time.
        let attn = Attention::new(32, 4, 2, vb.pp("attn"))?;
        let norm = layer_norm(32, 1e-5, vb.pp("norm"))?;
        let n = TILE_ROWS + 40;
        let pe = pseudo_random(&[1, n, 32], 3, 1.0)?;
        for (b, bi, shared) in [(1, 1, false), (3, 3, false), (3, 1, false), (3, 1, true)] {
            let tk = pseudo_random(&[b, 6, 32], 1, 1.0)?;
            let tv = pseudo_random(&[b, 6, 32], 4, 1.0)?;
            let image = pseudo_random(&[bi, n, 32], 2, 1.0)?;
            let q = image.broadcast_add(&pe)?;
            let projected = if shared {
                Some(attn.project_queries(&q)?)
            } else {
                None
            };
            let fused = image_to_token(&attn, &norm, &image, &pe, projected.as_ref(), &tk, &tv)?;
            let wide = |t: &Tensor| t.broadcast_as((b, n, 32))?.contiguous();
            let update = attn.forward(&wide(&q)?, &tk, &tv)?;
            let plain = norm.forward(&(wide(&image)? + update)?)?;
            let diff = max_abs_diff(&fused, &plain)?;
            assert!(
                diff < 2e-5,
                "B={b}, image batch {bi}, shared {shared}: {diff}"
            );
        }
        Ok(())
    }
}
