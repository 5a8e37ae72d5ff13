//! Image-to-token scores of all image tokens of one prompt at once, for queries that need no
//! image values: the first block's shared projected queries, or the later blocks' queries
//! through the factored tokens.

use super::image_to_token::{Dims, PromptSide};
use super::{LowRankKeys, SharedQueries};
use candle_core::Result;
use segany_core::nn::{matmul_acc_into, matmul_into, MatRef, Scratch};

/// Image tokens per tile of factored scores.
const ROWS: usize = 256;

/// For factored queries, each basis row of prompt `bb` through `q_proj`'s weight against each
/// of its token keys `k (Nt, Di)`: `(R·W_qᵀ)_h·k_hᵀ` per head, side by side, `(rank, heads·Nt)`.
pub(super) fn factored_keys(
    keys: &LowRankKeys,
    bb: usize,
    k: &[f32],
    wq: &[f32],
    dims: &Dims,
) -> Result<Vec<f32>> {
    let Dims { h, c, nt, d } = *dims;
    let (di, r, hn) = (h * c, keys.rank(), h * nt);
    let mut f = vec![0f32; r * di];
    let basis = keys.basis(bb);
    matmul_into(
        &mut f,
        di,
        MatRef::row_major(&basis, r, d)?,
        MatRef::row_major(wq, di, d)?.t(),
        1.0,
        false,
    )?;
    let mut fk = vec![0f32; r * hn];
    for hh in 0..h {
        let fh = MatRef::new(&f[hh * c..], r, c, di, 1)?;
        let kh = MatRef::new(&k[hh * c..], nt, c, di, 1)?.t();
        matmul_into(&mut fk[hh * nt..], hn, fh, kh, 1.0, false)?;
    }
    Ok(fk)
}

/// Queries scored for a whole prompt at once.
pub(super) enum PromptScores<'a> {
    /// Shared projected queries `(heads, N, c)` of this prompt's image.
    Shared(&'a [f32]),
    /// The shared queries, the factored tokens and the prompt.
    Factored(&'a SharedQueries, &'a LowRankKeys<'a>, usize),
}

/// The scaled scores `s (N, heads·Nt)` of all image tokens of one prompt against its token
/// keys `k (Nt, Di)`.
pub(super) fn prompt_scores(
    s: &mut [f32],
    queries: PromptScores,
    k: &[f32],
    side: &PromptSide,
    dims: &Dims,
    n: usize,
    scale: f32,
) -> Result<()> {
    let Dims { h, c, nt, .. } = *dims;
    let (di, hn) = (h * c, h * nt);
    match queries {
        PromptScores::Shared(q) => {
            for hh in 0..h {
                let qh = MatRef::row_major(&q[hh * n * c..], n, c)?;
                let kh = MatRef::new(&k[hh * c..], nt, c, di, 1)?.t();
                matmul_into(&mut s[hh * nt..], hn, qh, kh, scale, false)?;
            }
        }
        PromptScores::Factored(sq, keys, bb) => {
            // Per tile of image tokens (its coefficients and queries stay in cache): the basis
            // part Ã·fk, then per head (c ⊙ Sq + Pq)_h·k_hᵀ.
            let r = keys.rank();
            let mut at = Scratch::take(ROWS * r);
            let mut cl = Scratch::take(ROWS);
            let mut qs = Scratch::take(ROWS * di);
            for r0 in (0..n).step_by(ROWS) {
                let rows = ROWS.min(n - r0);
                let (at, cl, qs) = (&mut at[..rows * r], &mut cl[..rows], &mut qs[..rows * di]);
                let st = &mut s[r0 * hn..(r0 + rows) * hn];
                keys.coefficients(bb, r0, at, cl);
                matmul_into(
                    st,
                    hn,
                    MatRef::row_major(at, rows, r)?,
                    MatRef::row_major(&side.fk, r, hn)?,
                    scale,
                    false,
                )?;
                let shared = sq.sq[r0 * di..].chunks(di).zip(sq.pq[r0 * di..].chunks(di));
                for ((q, (s, p)), c) in qs.chunks_mut(di).zip(shared).zip(cl.iter()) {
                    for ((q, s), p) in q.iter_mut().zip(s).zip(p) {
                        *q = c * s + p;
                    }
                }
                for hh in 0..h {
                    let qh = MatRef::new(&qs[hh * c..], rows, c, di, 1)?;
                    let kh = MatRef::new(&k[hh * c..], nt, c, di, 1)?.t();
                    matmul_acc_into(&mut st[hh * nt..], hn, qh, kh, scale, false)?;
                }
            }
        }
    }
    Ok(())
}
