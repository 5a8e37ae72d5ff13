//! Image-to-token scores of a tile of image tokens for queries that need no image values: the
//! first block's shared projected queries, or the later blocks' queries through the factored
//! tokens.

use super::image_to_token::{Dims, PromptSide};
use super::low_rank::Projector;
use super::{LowRankKeys, SharedQueries};
use candle_core::Result;
use segany_core::nn::{matmul_few_rows_into, matmul_into, MatRef, Scratch};

/// For factored queries, each basis row of prompt `bb` through `q_proj`'s weight against each
/// of its token keys `k (Nt, Di)`: `(R·W_qᵀ)_h·k_hᵀ` per head, side by side, `(rank, heads·Nt)`.
/// `wq` projects the basis through `q_proj`'s weight ([`LowRankKeys::projector`]).
pub(super) fn factored_keys(wq: &Projector, bb: usize, k: &[f32], dims: &Dims) -> Result<Vec<f32>> {
    let Dims { h, c, nt, .. } = *dims;
    let (di, hn, r) = (h * c, h * nt, wq.rank());
    let mut f = vec![0f32; r * di];
    wq.project(bb, &mut f)?;
    let mut fk = vec![0f32; r * hn];
    for hh in 0..h {
        let fh = MatRef::new(&f[hh * c..], r, c, di, 1)?;
        let kh = MatRef::new(&k[hh * c..], nt, c, di, 1)?.t();
        matmul_into(&mut fk[hh * nt..], hn, fh, kh, 1.0, false)?;
    }
    Ok(fk)
}

/// Queries that need no image values (scored from shared projections).
pub(super) enum TileQueries<'a> {
    /// Shared projected queries of this prompt's image, `(heads, N, c)` with each tile of
    /// image tokens transposed in place: `(c, rows)` at `(head·N + r0)·c`.
    Shared(&'a [f32]),
    /// The shared queries, the factored tokens and the prompt.
    Factored(&'a SharedQueries, &'a LowRankKeys<'a>, usize),
}

/// The scaled scores of image tokens `r0..r0 + rows` of one prompt against its token keys
/// `k (Nt, Di)`, token-major: row `j` (head, token) of `s (heads·Nt, rows)` at `j·stride`.
#[allow(clippy::too_many_arguments)]
#[inline(always)] // into the caller's vector-width build (`avx2_dispatch!`)
pub(super) fn tile_scores(
    s: &mut [f32],
    stride: usize,
    queries: TileQueries,
    k: &[f32],
    side: &PromptSide,
    dims: &Dims,
    (n, r0, rows): (usize, usize, usize),
    scale: f32,
) -> Result<()> {
    let Dims { h, c, nt, .. } = *dims;
    let (di, hn) = (h * c, h * nt);
    // Per head: the (Nt × c) keys against (c × rows) transposed queries, `q` of row stride `ld`.
    let per_head = |s: &mut [f32], q: &[f32], ld: usize, head_stride: usize, acc: bool| {
        (0..h).try_for_each(|hh| {
            matmul_few_rows_into(
                &mut s[hh * nt * stride..],
                stride,
                (&k[hh * c..], di),
                (&q[hh * head_stride..], ld),
                (nt, c, rows),
                scale,
                acc,
            )
        })
    };
    match queries {
        TileQueries::Shared(qt) => per_head(s, &qt[r0 * c..], rows, c * n, false)?,
        TileQueries::Factored(sq, keys, bb) => {
            // The basis part fkᵀ·Ãᵀ, then per head k_h·(c ⊙ Sq + Pq)_hᵀ.
            let r = keys.rank();
            let mut at = Scratch::take(r * rows);
            let mut cl = Scratch::take(rows);
            keys.coefficients_t(bb, r0, &mut at, rows, &mut cl);
            matmul_into(
                s,
                stride,
                MatRef::row_major(&side.fk, r, hn)?.t(),
                MatRef::row_major(&at, r, rows)?,
                scale,
                false,
            )?;
            drop(at);
            // The tile's contiguous (Di × rows) blocks of the shared queries.
            let mut qs = Scratch::take(di * rows);
            let block = r0 * di..(r0 + rows) * di;
            let shared = sq.sqt[block.clone()]
                .chunks(rows)
                .zip(sq.pqt[block].chunks(rows));
            for (q, (sr, pr)) in qs.chunks_mut(rows).zip(shared) {
                for (((q, s), p), c) in q.iter_mut().zip(sr).zip(pr).zip(cl.iter()) {
                    *q = c * s + p;
                }
            }
            per_head(s, &qs, rows, c * rows, true)?;
        }
    }
    Ok(())
}
