//! Tokens attending to per-prompt image tokens known in factored form.
//!
//! Every block's image-to-token step changes each prompt's image tokens by a product of
//! rank `heads·Nt` (56 for SAM) and a layer norm:
//! `keys'[p] = inv[p]·(keys[p] + A[p]·U + b − mean[p])·γ + β` ([`ImageUpdate`]). Unrolled
//! from the image `x` shared by every prompt, the tokens after `L` blocks are
//!
//! `keys_L[p] = c[p]·(x[p]·diag(G)) + Ã[p]·R`
//!
//! with `G` the product of the norms' gains, `c[p]` the product of the `inv[p]`, and per
//! prompt a basis `R` of `Σ (heads·Nt + 3)` rows (each block's `U`, bias, gain and shift,
//! scaled by the later gains) with per-token coefficients `Ã[p]` (the probabilities `A[p]`,
//! `inv[p]`, `−inv[p]·mean[p]`, 1, scaled by the later `inv`s). Every recurrence is exact.
//!
//! A projection of `keys_L` through a fixed weight then splits into a part shared by all
//! prompts, `(x·diag(G))·Wᵀ`, projected once per image ([`SharedProjections`]), and a product
//! with the narrow `Ã`. For a token-to-image attention that is scores
//! `q·Kᵀ = c ⊙ (q·Skᵀ) + (q·(R·W_kᵀ)ᵀ)·Ãᵀ + q·Pkᵀ` and values
//! `A·V = (A ⊙ c)·Sv + (A·Ã)·(R·W_vᵀ) + b_v`: per prompt ≈ `N·(heads·Nq)·(2·rank + 2·c)`
//! multiply-adds instead of `2·N·(heads·Nq)·D` for the plain reassociation
//! ([`super::token_to_image`]): about a third in the second of SAM's two blocks (rank 59),
//! about half in the final attention (rank 118), against D = 256.

use super::image_to_token::TILE_ROWS;
use super::{values, ImageUpdate, SharedProjections};
use crate::attention::Attention;
use candle_core::{bail, Module, Result, Tensor};
use rayon::prelude::*;
use segany_core::nn::{
    matmul_acc_into, matmul_acc_into_col_major, matmul_few_rows_into, matmul_into,
    softmax_chunk_unnormalised, transpose_into, zeroed_output, MatRef, Scratch,
};

/// Image tokens per tile of a token-to-image attention: the tiles of the shared projections.
const TILE: usize = TILE_ROWS;

/// Per-prompt image tokens after the blocks whose updates are `levels` (first block first),
/// in the factored form of the module docs.
#[derive(Debug, Clone, Copy)]
pub struct LowRankKeys<'a> {
    levels: &'a [ImageUpdate],
}

impl<'a> LowRankKeys<'a> {
    /// The tokens after `levels` (at least one; all of one batch and width).
    pub fn new(levels: &'a [ImageUpdate]) -> Result<Self> {
        let Some(first) = levels.first() else {
            bail!("low-rank keys: no update")
        };
        if levels
            .iter()
            .any(|l| (l.b, l.n, l.d) != (first.b, first.n, first.d))
        {
            bail!("low-rank keys: updates of different batches or widths")
        }
        Ok(Self { levels })
    }

    pub(crate) fn batch(&self) -> usize {
        self.levels[0].b
    }

    pub(crate) fn tokens(&self) -> usize {
        self.levels[0].n
    }

    pub(crate) fn width(&self) -> usize {
        self.levels[0].d
    }

    /// Number of basis rows.
    pub(crate) fn rank(&self) -> usize {
        self.levels.iter().map(|l| l.hn + 3).sum()
    }

    /// The product of the norms' gains, `G (D)`.
    pub(crate) fn gain(&self) -> Vec<f32> {
        let mut g = vec![1f32; self.width()];
        for l in self.levels {
            for (a, b) in g.iter_mut().zip(&l.gamma) {
                *a *= b;
            }
        }
        g
    }

    /// The tokens themselves, `(B, N, D)`, from the shared image `x (N, D)` they started as.
    pub fn materialise(&self, x: &[f32]) -> Result<Vec<f32>> {
        let (b, n, d, r) = (self.batch(), self.tokens(), self.width(), self.rank());
        if x.len() != n * d {
            bail!(
                "low-rank keys: image of {} values for {n} × {d} tokens",
                x.len()
            )
        }
        let g = self.gain();
        let mut out = zeroed_output(b * n * d);
        out.par_chunks_mut(n * d)
            .enumerate()
            .try_for_each(|(bb, o)| {
                let basis = self.basis(bb);
                let mut at = vec![0f32; r * n];
                let mut c = vec![0f32; n];
                self.coefficients_t(bb, 0, &mut at, n, &mut c);
                matmul_into(
                    o,
                    d,
                    MatRef::row_major(&at, r, n)?.t(),
                    MatRef::row_major(&basis, r, d)?,
                    1.0,
                    false,
                )?;
                for ((row, xr), c) in o.chunks_mut(d).zip(x.chunks(d)).zip(&c) {
                    for ((v, x), g) in row.iter_mut().zip(xr).zip(&g) {
                        *v += c * (x * g);
                    }
                }
                Ok::<_, candle_core::Error>(())
            })?;
        Ok(out)
    }

    /// The basis `R (rank, D)` of prompt `bb`: per block, the earlier rows, then `U`, the bias,
    /// the gain and the shift, all times this block's gain (the shift excepted).
    pub(crate) fn basis(&self, bb: usize) -> Vec<f32> {
        let d = self.width();
        let mut r: Vec<f32> = Vec::with_capacity(self.rank() * d);
        for l in self.levels {
            let g = &l.gamma;
            for row in r.chunks_mut(d) {
                for (v, g) in row.iter_mut().zip(g) {
                    *v *= g;
                }
            }
            for row in l.u[bb * l.hn * d..(bb + 1) * l.hn * d]
                .chunks(d)
                .chain([&l.bias[..]])
            {
                r.extend(row.iter().zip(g).map(|(u, g)| u * g));
            }
            r.extend_from_slice(g);
            r.extend_from_slice(&l.beta);
        }
        r
    }

    /// What projects every prompt's basis through `w (Di, D)` (a linear layer's weight):
    /// [`Projector::project`] gives `R·wᵀ (rank, Di)` without forming `R`. Per block, the
    /// rows of `U` are `(v_h·W_o,hᵀ)·diag(Γ)` with `Γ` the gains from that block on, so their
    /// projection is `v_h·(W_o,hᵀ·diag(Γ)·wᵀ)`: the bracket once per batch (`c × Di` per head),
    /// then `Nt × c × Di` per head and prompt instead of `Nt × D × Di`. The bias, gain and
    /// shift rows are the same for every prompt.
    pub(crate) fn projector(&self, w: &[f32]) -> Result<Projector<'a>> {
        let d = self.width();
        let di = w.len() / d;
        if w.len() != di * d {
            bail!(
                "low-rank keys: projection of {} values for width {d}",
                w.len()
            )
        }
        let wt = MatRef::row_major(w, di, d)?.t();
        let mut per_level = Vec::with_capacity(self.levels.len());
        for (i, l) in self.levels.iter().enumerate() {
            // Γ from this block on, and from the next one on (for the shift row).
            let after: Vec<f32> = self.levels[i + 1..].iter().fold(vec![1f32; d], |g, m| {
                g.iter().zip(&m.gamma).map(|(a, b)| a * b).collect()
            });
            let from: Vec<f32> = after.iter().zip(&l.gamma).map(|(a, b)| a * b).collect();
            let (h, diu) = (l.heads, l.wo.len() / d);
            let c = diu / h;
            if h == 0 || l.wo.len() != d * diu || diu != h * c || l.hn % h != 0 {
                bail!(
                    "low-rank keys: out_proj of {} values, {h} heads, width {d}",
                    l.wo.len()
                )
            }
            // W_o,hᵀ·diag(Γ) per head, (c × D), stacked: W_oᵀ·diag(Γ) (heads·c × D); then
            // through wᵀ in one product: (heads·c × Di), head hh's (c × Di) at hh·c·Di.
            let mut wog = vec![0f32; diu * d];
            transpose_into(&l.wo, &mut wog, d, diu);
            for row in wog.chunks_mut(d) {
                for (v, g) in row.iter_mut().zip(&from) {
                    *v *= g;
                }
            }
            let mut m = vec![0f32; diu * di];
            matmul_into(&mut m, di, MatRef::row_major(&wog, diu, d)?, wt, 1.0, true)?;
            let shared: Vec<f32> = l
                .bias
                .iter()
                .zip(&from)
                .map(|(b, g)| b * g)
                .chain(from.iter().copied())
                .chain(l.beta.iter().zip(&after).map(|(b, g)| b * g))
                .collect();
            let mut rows = vec![0f32; 3 * di];
            matmul_into(
                &mut rows,
                di,
                MatRef::row_major(&shared, 3, d)?,
                wt,
                1.0,
                false,
            )?;
            per_level.push((m, rows));
        }
        Ok(Projector {
            keys: *self,
            di,
            per_level,
        })
    }

    /// The coefficients of prompt `bb`'s image tokens `first..first + len` (`len = c.len()`),
    /// transposed, `Ãᵀ (rank, len)` with rows `ld` apart in `at`, and their scales `c (len)`.
    /// Token-minor like the records' probabilities ([`ImageUpdate`]), so every step runs
    /// across the tokens.
    // Inlined into the callers' vector-width builds (`avx2_dispatch!`).
    #[inline(always)]
    pub(crate) fn coefficients_t(
        &self,
        bb: usize,
        first: usize,
        at: &mut [f32],
        ld: usize,
        c: &mut [f32],
    ) {
        let (n, len) = (self.tokens(), c.len());
        let end = first + len;
        c.fill(1.0);
        let mut row0 = 0;
        for l in self.levels {
            let inv = &l.inv[bb * n + first..bb * n + end];
            let mean = &l.mean[bb * n + first..bb * n + end];
            for r in 0..row0 {
                for (v, i) in at[r * ld..][..len].iter_mut().zip(inv) {
                    *v *= i;
                }
            }
            // This step's probabilities, record tile by record tile.
            let mut p = first;
            while p < end {
                let t0 = p / TILE * TILE;
                let rows = TILE.min(n - t0);
                let stop = end.min(t0 + rows);
                let block = &l.a[(bb * n + t0) * l.hn..(bb * n + t0 + rows) * l.hn];
                for (j, src) in block.chunks(rows).enumerate() {
                    let dst = &mut at[(row0 + j) * ld + (p - first)..][..stop - p];
                    let src = src[p - t0..stop - t0].iter().zip(&inv[p - first..]);
                    for (d, (a, i)) in dst.iter_mut().zip(src) {
                        *d = i * a;
                    }
                }
                p = stop;
            }
            row0 += l.hn;
            at[row0 * ld..][..len].copy_from_slice(inv);
            let shift = at[(row0 + 1) * ld..][..len]
                .iter_mut()
                .zip(inv.iter().zip(mean));
            for (v, (i, m)) in shift {
                *v = -i * m;
            }
            at[(row0 + 2) * ld..][..len].fill(1.0);
            row0 += 3;
            for (cp, i) in c.iter_mut().zip(inv) {
                *cp *= i;
            }
        }
    }
}

/// Every prompt's basis through one projection ([`LowRankKeys::projector`]).
pub(crate) struct Projector<'a> {
    keys: LowRankKeys<'a>,
    di: usize,
    /// Per block: `W_o,hᵀ·diag(Γ)·wᵀ` per head `(heads, c, Di)`, and the bias, gain and shift
    /// rows through `wᵀ`, `(3, Di)`.
    per_level: Vec<(Vec<f32>, Vec<f32>)>,
}

impl Projector<'_> {
    /// Number of basis rows, as [`LowRankKeys::rank`].
    pub(crate) fn rank(&self) -> usize {
        self.keys.rank()
    }

    /// `R·wᵀ (rank, Di)` of prompt `bb` into `out`, as `basis(bb)` times `wᵀ`.
    pub(crate) fn project(&self, bb: usize, out: &mut [f32]) -> Result<()> {
        let di = self.di;
        if out.len() != self.keys.rank() * di {
            bail!(
                "low-rank keys: {} values for a projected basis of rank {}",
                out.len(),
                self.keys.rank()
            )
        }
        let mut row0 = 0;
        for (l, (m, rows)) in self.keys.levels.iter().zip(&self.per_level) {
            let (v, (h, nt, c)) = l.prompt_values(bb);
            let diu = h * c;
            for hh in 0..h {
                let vh = MatRef::new(&v[hh * c..], nt, c, diu, 1)?;
                let mh = MatRef::row_major(&m[hh * c * di..(hh + 1) * c * di], c, di)?;
                matmul_into(&mut out[(row0 + hh * nt) * di..], di, vh, mh, 1.0, false)?;
            }
            row0 += l.hn;
            out[row0 * di..(row0 + 3) * di].copy_from_slice(rows);
            row0 += 3;
        }
        Ok(())
    }

    /// Columns `j0..j0 + cols` of prompt `bb`'s `R·wᵀ`, `(rank, cols)`, into `out` with rows
    /// `ld` apart.
    pub(crate) fn project_columns(
        &self,
        bb: usize,
        j0: usize,
        cols: usize,
        out: &mut [f32],
        ld: usize,
    ) -> Result<()> {
        let (di, rank) = (self.di, self.keys.rank());
        if j0 + cols > di || ld < cols || out.len() < rank * ld {
            bail!(
                "low-rank keys: columns {j0}..{} of {di}, rows {ld} apart in {} values, for \
                 rank {rank}",
                j0 + cols,
                out.len()
            )
        }
        let mut row0 = 0;
        for (l, (m, rows)) in self.keys.levels.iter().zip(&self.per_level) {
            let (v, (h, nt, c)) = l.prompt_values(bb);
            let diu = h * c;
            for hh in 0..h {
                matmul_few_rows_into(
                    &mut out[(row0 + hh * nt) * ld..],
                    ld,
                    (&v[hh * c..], diu),
                    (&m[hh * c * di + j0..], di),
                    (nt, c, cols),
                    1.0,
                    false,
                )?;
            }
            row0 += l.hn;
            for (i, shared) in rows.chunks(di).enumerate() {
                out[(row0 + i) * ld..][..cols].copy_from_slice(&shared[j0..j0 + cols]);
            }
            row0 += 3;
        }
        Ok(())
    }
}

/// `attn(q = queries, k = keys + pe, v = keys)` with `keys` the per-prompt image tokens in
/// factored form and `image` the matching shared projections: `queries (B, Nq, D)` →
/// `(B, Nq, D)`, as [`super::token_to_image`] on the materialised tokens gives.
pub fn token_to_low_rank_image(
    attn: &Attention,
    queries: &Tensor,
    image: &SharedProjections,
    keys: LowRankKeys,
) -> Result<Tensor> {
    let q = attn.q_proj().forward(queries)?;
    let (b, nq, di) = q.dims3()?;
    let n = keys.tokens();
    if keys.batch() != b || image.n != n || image.di != di {
        bail!(
            "token-to-image (low rank): queries {:?}, {} prompts of {n} tokens, shared \
             projections of {} tokens × {}",
            q.dims(),
            keys.batch(),
            image.n,
            image.di
        )
    }
    let h = attn.num_heads();
    let pv = attn.values()?;
    let w = Weights {
        k: keys.projector(&pv.k)?,
        v: keys.projector(&pv.v)?,
        bv: pv.bv.clone(),
        h,
        c: di / h,
    };
    let qv = values(&q)?;
    let mut out = vec![0f32; b * nq * di];
    out.par_chunks_mut(nq * di)
        .enumerate()
        .try_for_each(|(bb, o)| {
            one_prompt(
                &qv[bb * nq * di..(bb + 1) * nq * di],
                bb,
                &keys,
                image,
                &w,
                o,
            )
        })?;
    let out = Tensor::from_vec(out, (b, nq, di), queries.device())?;
    attn.out_proj().forward(&out)
}

struct Weights<'a> {
    /// Every prompt's basis through the key and the value projection.
    k: Projector<'a>,
    v: Projector<'a>,
    bv: Vec<f32>,
    h: usize,
    c: usize,
}

segany_core::avx2_dispatch! {
    /// One prompt: projected queries `q (Nq, Di)` → `o (Nq, Di)` (before `out_proj`), built for
    /// the CPU's vector width (the element-wise passes over the tiles, coefficients, keys and
    /// softmax, are about a fifth of it by profile).
    fn one_prompt(
        q: &[f32],
        bb: usize,
        keys: &LowRankKeys,
        image: &SharedProjections,
        w: &Weights,
        o: &mut [f32],
    ) -> Result<()> => one_prompt_body
}

#[inline(always)]
fn one_prompt_body(
    q: &[f32],
    bb: usize,
    keys: &LowRankKeys,
    image: &SharedProjections,
    w: &Weights,
    o: &mut [f32],
) -> Result<()> {
    let (h, c) = (w.h, w.c);
    let (n, di, r) = (image.n, image.di, keys.rank());
    let nq = q.len() / di;
    let hn = h * nq;
    let scale = 1.0 / (c as f32).sqrt();
    // The basis through the key and value projections, (rank, Di) each.
    let mut mk = vec![0f32; r * di];
    let mut mv = vec![0f32; r * di];
    w.k.project(bb, &mut mk)?;
    w.v.project(bb, &mut mv)?;
    // e: row (head, token) = the query against each basis row's key, (heads·Nq, rank).
    let mut e = vec![0f32; hn * r];
    for hh in 0..h {
        let qh = MatRef::new(&q[hh * c..], nq, c, di, 1)?;
        let mkh = MatRef::new(&mk[hh * c..], r, c, di, 1)?.t();
        matmul_into(&mut e[hh * nq * r..], r, qh, mkh, 1.0, false)?;
    }
    // Over tiles of image tokens, everything of a tile in cache: its coefficients, scores and
    // keys; the softmax online (the accumulated values rescaled when a row's maximum rises).
    // Accumulated per (head, query): z = A·Ã (heads·Nq, rank) and o = (A ⊙ c)·Sv (Nq, Di),
    // both unnormalised.
    let mut z = Scratch::take(hn * r);
    z.fill(0.0);
    o.fill(0.0);
    let mut running = vec![(f32::NEG_INFINITY, 0f32); hn];
    let mut at = Scratch::take(TILE * r);
    let mut cl = Scratch::take(TILE);
    // Score rows `ls` apart (padded: rows a power of two apart share cache sets).
    let mut s = Scratch::take(hn * (TILE + 16));
    let mut kt = Scratch::take(di * TILE);
    for j0 in (0..n).step_by(TILE) {
        let cols = TILE.min(n - j0);
        let ls = cols + 16;
        let (at, cl) = (&mut at[..r * cols], &mut cl[..cols]);
        let (s, kt) = (&mut s[..hn * ls], &mut kt[..di * cols]);
        keys.coefficients_t(bb, j0, at, cols, cl);
        // Scores (heads·Nq, cols): the basis part, then the shared part `c ⊙ Sk + Pk` per head.
        let at_t = MatRef::row_major(at, r, cols)?;
        matmul_into(s, ls, MatRef::row_major(&e, hn, r)?, at_t, scale, false)?;
        // The tile's contiguous (Di × cols) blocks of the shared projections.
        let block = j0 * di..(j0 + cols) * di;
        let shared = image.skt[block.clone()].chunks(cols);
        let shared = shared.zip(image.pkt[block.clone()].chunks(cols));
        for (row, (sk, pk)) in kt.chunks_mut(cols).zip(shared) {
            for (((v, s), p), c) in row.iter_mut().zip(sk).zip(pk).zip(cl.iter()) {
                *v = c * s + p;
            }
        }
        // Per head `s_h += q_h·K̃_h`: (Nq × c) queries against (c × cols) keys.
        for hh in 0..h {
            matmul_few_rows_into(
                &mut s[hh * nq * ls..],
                ls,
                (&q[hh * c..], di),
                (&kt[hh * c * cols..], cols),
                (nq, c, cols),
                scale,
                true,
            )?;
        }
        for (i, (row, run)) in s.chunks_mut(ls).zip(running.iter_mut()).enumerate() {
            let alpha = softmax_chunk_unnormalised(&mut row[..cols], run);
            if alpha != 1.0 {
                for v in &mut z[i * r..(i + 1) * r] {
                    *v *= alpha;
                }
                let (hh, t) = (i / nq, i % nq);
                for v in &mut o[t * di + hh * c..t * di + (hh + 1) * c] {
                    *v *= alpha;
                }
            }
        }
        // z += A·Ã, then `o_h += (A ⊙ c)_h·Sv_h`, computed as `o_hᵀ += Sv_hᵀ·A_hᵀ`: c rows.
        // Ã token-major (`Ãᵀ` transposed by register blocks): gemm packs Ã's columns, and
        // read from `Ãᵀ` they were a gather of one value per row, as slow as the product.
        let mut ac = Scratch::take(cols * r);
        transpose_into(at, &mut ac, r, cols);
        matmul_acc_into(
            &mut z,
            r,
            MatRef::new(s, hn, cols, ls, 1)?,
            MatRef::row_major(&ac, cols, r)?,
            1.0,
            false,
        )?;
        drop(ac);
        for row in s.chunks_mut(ls) {
            for (v, c) in row.iter_mut().zip(cl.iter()) {
                *v *= c;
            }
        }
        let sv = &image.svt[block];
        for hh in 0..h {
            let ah = MatRef::new(&s[hh * nq * ls..], nq, cols, ls, 1)?;
            let svh = MatRef::row_major(&sv[hh * c * cols..(hh + 1) * c * cols], c, cols)?;
            matmul_acc_into_col_major(&mut o[hh * c..], di, svh, ah.t(), 1.0, false)?;
        }
    }
    // Normalised: o_h = (z_h·(R·W_vᵀ)_h + o_h) / sum, then the bias.
    for hh in 0..h {
        let zh = MatRef::row_major(&z[hh * nq * r..(hh + 1) * nq * r], nq, r)?;
        let mvh = MatRef::new(&mv[hh * c..], r, c, di, 1)?;
        matmul_acc_into(&mut o[hh * c..], di, zh, mvh, 1.0, false)?;
    }
    for (t, row) in o.chunks_mut(di).enumerate() {
        for (hh, head) in row.chunks_mut(c).enumerate() {
            let inv = 1.0 / running[hh * nq + t].1;
            for (v, b) in head.iter_mut().zip(&w.bv[hh * c..]) {
                *v = *v * inv + b;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{
        image_to_token, image_to_token_factored, image_to_token_tracked, max_abs_diff,
        token_to_image, upscale_factored_masks_into, upscale_masks, BufferPool, ImageQueries,
        SharedQueries,
    };
    use super::*;
    use crate::test_util::{pseudo_random, randomise};
    use crate::upscale::ConvTranspose2x2;
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use segany_core::nn::{layer_norm, LayerNorm};

    fn upscaling(vb: &VarBuilder) -> Result<(ConvTranspose2x2, LayerNorm, ConvTranspose2x2)> {
        Ok((
            ConvTranspose2x2::new(32, 8, vb.pp("up1"))?,
            layer_norm(8, 1e-6, vb.pp("up_norm"))?,
            ConvTranspose2x2::new(8, 4, vb.pp("up2"))?,
        ))
    }

    /// The probabilities and norm statistics of `got` are those of `want` (relative 2e-5).
    fn same_record(got: &ImageUpdate, want: &ImageUpdate, step: usize) {
        for (what, a, b) in [
            ("probabilities", &got.a, &want.a),
            ("means", &got.mean, &want.mean),
            ("inverse deviations", &got.inv, &want.inv),
        ] {
            assert_eq!(a.len(), b.len(), "step {step}: {what}");
            let diff = a
                .iter()
                .zip(b)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let scale = b.iter().map(|b| b.abs()).fold(0f32, f32::max);
            assert!(
                diff < 2e-5 * scale.max(1.0),
                "step {step}, {what}: {diff} (scale {scale})"
            );
        }
    }

    /// Two image-to-token steps from one shared image, then a token-to-image attention on
    /// the factored tokens after one and after two steps: the same as [`token_to_image`] on
    /// the materialised tokens. Norm gains far from 1 and non-zero shifts, so a basis row
    /// scaled by the wrong gain, or a coefficient by the wrong `inv`, shows. Each step's
    /// record made from the factored tokens (norm statistics without the tokens) equals the
    /// one made from the tokens.
    #[test]
    fn matches_attention_on_materialised_tokens() -> Result<()> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let build = |vb: &VarBuilder| -> Result<(Vec<(Attention, LayerNorm)>, Attention)> {
            let steps = (0..2)
                .map(|i| {
                    let attn = Attention::new(32, 4, 2, vb.pp(format!("i2t{i}")))?;
                    let norm = layer_norm(32, 1e-5, vb.pp(format!("norm{i}")))?;
                    Ok((attn, norm))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((steps, Attention::new(32, 4, 2, vb.pp("t2i"))?))
        };
        build(&vb)?;
        upscaling(&vb)?;
        randomise(&varmap, 0.6)?;
        // Built after the weights are set: `Linear` copies its weight at build time.
        let (steps, t2i) = build(&vb)?;
        let (b, n, nt) = (3, 300, 6);
        let x = pseudo_random(&[1, n, 32], 1, 1.0)?;
        let pe = pseudo_random(&[1, n, 32], 2, 1.0)?;
        let queries = pseudo_random(&[b, nt, 32], 3, 1.0)?;
        let mut keys = x.clone();
        let mut updates = Vec::new();
        let pool = BufferPool::default();
        // Stale values in the pool: the step must overwrite every one.
        pool.give(vec![f32::NAN; b * n * 32]);
        pool.give(vec![f32::NAN; b * n * 4 * nt]);
        let mut gain = vec![1f32; 32];
        for (i, (attn, norm)) in steps.iter().enumerate() {
            let tk = pseudo_random(&[b, nt, 32], 10 + i as u64, 1.0)?;
            let tv = pseudo_random(&[b, nt, 32], 20 + i as u64, 1.0)?;
            // Buffers from a pool, with stale values from the step before: all overwritten.
            let probs = pool.take(b * n * 4 * nt);
            let (next, update) = image_to_token_tracked(
                attn,
                norm,
                &keys,
                &pe,
                ImageQueries::Project,
                (&tk, &tv),
                Some(pool.take(b * n * 32)),
                (probs, Some(&pool)),
            )?;
            if i > 0 {
                // The same step with the queries read through the factored tokens (the
                // gains so far are those of the earlier steps), recording only.
                let shared = SharedQueries::new(attn, &x, &pe, &gain)?;
                let queries = ImageQueries::Factored(&shared, LowRankKeys::new(&updates)?);
                let (none, other) = image_to_token_tracked(
                    attn,
                    norm,
                    &keys,
                    &pe,
                    queries,
                    (&tk, &tv),
                    None,
                    (vec![f32::NAN; b * n * 4 * nt], None),
                )?;
                assert!(none.is_none(), "tokens written although not asked");
                same_record(&other, &update, i);
            }
            // The step from the shared image and the earlier steps' updates, never reading
            // `keys`: the first step's queries projected from the image, the later ones'
            // through the factored tokens.
            let shared;
            let (earlier, step_queries) = match i {
                0 => (None, ImageQueries::Project),
                _ => {
                    shared = SharedQueries::new(attn, &x, &pe, &gain)?;
                    let low = LowRankKeys::new(&updates)?;
                    (Some(low), ImageQueries::Factored(&shared, low))
                }
            };
            let factored = image_to_token_factored(
                attn,
                norm,
                &x,
                earlier,
                &pe,
                step_queries,
                (&tk, &tv),
                (vec![f32::NAN; b * n * 4 * nt], None),
            )?;
            same_record(&factored, &update, i);
            if i > 0 {
                // Queries projected from the shared image would be those of the wrong tokens.
                let wrong = image_to_token_factored(
                    attn,
                    norm,
                    &x,
                    earlier,
                    &pe,
                    ImageQueries::Project,
                    (&tk, &tv),
                    (vec![0f32; b * n * 4 * nt], None),
                );
                assert!(wrong.is_err(), "step {i}: projected queries accepted");
            }
            let next = next.ok_or_else(|| candle_core::Error::Msg("not written".into()))?;
            assert!(
                next.iter().chain(&update.a).all(|v| v.is_finite()),
                "stale values left"
            );
            let written = Tensor::from_vec(next.clone(), (b, n, 32), x.device())?;
            let plain = image_to_token(attn, norm, &keys, &pe, None, &tk, &tv)?;
            let diff = max_abs_diff(&written, &plain)?;
            assert!(diff < 1e-5, "tokens written to a pooled buffer: {diff}");
            pool.give(next);
            keys = written;
            updates.push(update);
            let low = LowRankKeys::new(&updates)?;
            let dense = Tensor::from_vec(low.materialise(&values(&x)?)?, (b, n, 32), x.device())?;
            let diff = max_abs_diff(&dense, &keys)?;
            assert!(diff < 2e-5, "materialised after {} steps: {diff}", i + 1);
            // Each prompt's basis through a projection, without forming it, equals the basis
            // times the projection's weight.
            let wk = values(t2i.k_proj().weight())?;
            let projector = low.projector(&wk)?;
            for bb in 0..b {
                let r = low.rank();
                let mut got = vec![f32::NAN; r * 16];
                projector.project(bb, &mut got)?;
                let basis = Tensor::from_vec(low.basis(bb), (r, 32), x.device())?;
                let want = basis.matmul(&t2i.k_proj().weight().t()?)?;
                let got = Tensor::from_vec(got, (r, 16), x.device())?;
                let diff = max_abs_diff(&got, &want)?;
                assert!(
                    diff < 2e-5,
                    "projected basis of prompt {bb}, {} steps: {diff}",
                    i + 1
                );
                // Columns 5..12 of it, rows 9 apart.
                let mut cols = vec![f32::NAN; r * 9];
                projector.project_columns(bb, 5, 7, &mut cols, 9)?;
                let cols: Vec<f32> = cols.chunks(9).flat_map(|row| row[..7].to_vec()).collect();
                let cols = Tensor::from_vec(cols, (r, 7), x.device())?;
                let diff = max_abs_diff(&cols, &want.narrow(1, 5, 7)?)?;
                assert!(diff < 2e-5, "projected columns of prompt {bb}: {diff}");
            }
            for (g, w) in gain.iter_mut().zip(values(norm.weight())?) {
                *g *= w;
            }
            let shared = SharedProjections::new(&t2i, &x, &pe, &gain)?;
            let low =
                token_to_low_rank_image(&t2i, &queries, &shared, LowRankKeys::new(&updates)?)?;
            let plain = token_to_image(&t2i, &queries, &keys, &pe)?;
            let diff = max_abs_diff(&low, &plain)?;
            assert!(diff < 5e-5, "after {} steps: {diff}", i + 1);
            let spread = plain.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(spread > 0.1, "outputs too small to compare: {spread}");
        }
        // The upscaling of selected prompts straight from the factored tokens equals the
        // upscaling of the materialised ones.
        let (gh, gw) = (15, 20);
        let (up1, up_norm, up2) = upscaling(&vb)?;
        let hyper = pseudo_random(&[2, 3, 4], 30, 1.0)?;
        let sel = [2usize, 0];
        let mut factored = vec![f32::NAN; 7];
        upscale_factored_masks_into(
            LowRankKeys::new(&updates)?,
            &x,
            &sel,
            (gh, gw),
            &up1,
            &up_norm,
            &up2,
            &hyper,
            &mut factored,
        )?;
        let factored = Tensor::from_vec(factored, (2, 3, 4 * gh, 4 * gw), x.device())?;
        let idx = Tensor::new(&[2u32, 0], x.device())?;
        let dense = upscale_masks(
            &keys.index_select(&idx, 0)?,
            (gh, gw),
            &up1,
            &up_norm,
            &up2,
            &hyper,
        )?;
        let diff = max_abs_diff(&factored, &dense)?;
        assert!(diff < 5e-5, "upscaled masks: {diff}");
        let spread = dense.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(spread > 0.1, "masks too small to compare: {spread}");
        // Gains and shifts really are away from the identity norm.
        let (_, norm) = &steps[1];
        let g = values(norm.weight())?;
        assert!(g.iter().any(|g| (g - 1.0).abs() > 0.2), "{g:?}");
        Ok(())
    }
}
