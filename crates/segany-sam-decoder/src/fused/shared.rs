//! Projections of the image every prompt of a batch shares, made once per image for the
//! factored decoder path ([`super::LowRankKeys`]).

use super::image_to_token::TILE_ROWS;
use crate::attention::Attention;
use candle_core::{bail, Result, Tensor};
use segany_core::nn::{matmul_into, with_f32_values, MatRef};

/// The image side of one token-to-image attention, projected once per image:
/// `skt = (W_k·diag(G))·xᵀ`, `pkt = W_k·peᵀ + b_k` and `svt = (W_v·diag(G))·xᵀ`, each
/// `(Di, N)`, for the image tokens `x` before any block and `G` the product of the gains of
/// the norms between `x` and this attention. Each is stored per tile of [`TILE_ROWS`] image
/// tokens: the `(Di, rows)` block of tokens `r0..` at `r0·Di`.
#[derive(Debug, Clone)]
pub struct SharedProjections {
    pub(crate) n: usize,
    pub(crate) di: usize,
    pub(crate) skt: Vec<f32>,
    pub(crate) pkt: Vec<f32>,
    pub(crate) svt: Vec<f32>,
}

impl SharedProjections {
    /// Projects `x (1, N, D)` and `pe (1, N, D)` for `attn`, with the gains `gain (D)`.
    pub fn new(attn: &Attention, x: &Tensor, pe: &Tensor, gain: &[f32]) -> Result<Self> {
        let (n, d) = image_dims("shared projections", x, pe, gain)?;
        let pv = attn.values()?;
        let (wk, wv) = (&pv.k, &pv.v);
        let di = wk.len() / d;
        if wk.len() != di * d || wv.len() != di * d {
            bail!("shared projections: projections are not (Di × {d})")
        }
        let bk = &pv.bk;
        let (wkg, wvg) = (times_gain(wk, gain), times_gain(wv, gain));
        let (skt, svt) = with_f32_values(x, |x| {
            Ok::<_, candle_core::Error>((
                tiled_projection(&wkg, x, None, (di, n, d))?,
                tiled_projection(&wvg, x, None, (di, n, d))?,
            ))
        })?;
        let pkt = with_f32_values(pe, |p| tiled_projection(wk, p, Some(bk), (di, n, d)))?;
        Ok(Self {
            n,
            di,
            skt,
            pkt,
            svt,
        })
    }
}

/// The image side of one image-to-token attention after the first block, projected once per
/// image, transposed: `sqt = (W_q·diag(G))·xᵀ` and `pqt = W_q·peᵀ + b_q`, so that
/// `q_proj(keys + pe)ᵀ = c ⊙ sqt + pqt + (R·W_qᵀ)ᵀ·Ãᵀ` for factored tokens `keys`. Each is
/// stored per tile of [`TILE_ROWS`] image tokens: the `(Di, rows)` block of tokens `r0..` at
/// `r0·Di`, so that a tile reads one contiguous block.
#[derive(Debug, Clone)]
pub struct SharedQueries {
    pub(crate) n: usize,
    pub(crate) di: usize,
    pub(crate) sqt: Vec<f32>,
    pub(crate) pqt: Vec<f32>,
}

impl SharedQueries {
    /// Projects `x (1, N, D)` and `pe (1, N, D)` for `attn`'s queries, with the gains `gain`.
    pub fn new(attn: &Attention, x: &Tensor, pe: &Tensor, gain: &[f32]) -> Result<Self> {
        let (n, d) = image_dims("shared queries", x, pe, gain)?;
        let pv = attn.values()?;
        let wq = &pv.q;
        let di = wq.len() / d;
        if wq.len() != di * d {
            bail!("shared queries: q_proj is not (Di × {d})")
        }
        let bq = &pv.bq;
        let wqg = times_gain(wq, gain);
        let sqt = with_f32_values(x, |x| tiled_projection(&wqg, x, None, (di, n, d)))?;
        let pqt = with_f32_values(pe, |p| tiled_projection(wq, p, Some(bq), (di, n, d)))?;
        Ok(Self { n, di, sqt, pqt })
    }
}

/// `w·xᵀ (+ bias)` for a weight `w (Di, D)` and tokens `x (N, D)`, laid out per tile of
/// [`TILE_ROWS`] tokens: the `(Di, rows)` block of tokens `r0..` at `r0·Di`.
fn tiled_projection(
    w: &[f32],
    x: &[f32],
    bias: Option<&[f32]>,
    (di, n, d): (usize, usize, usize),
) -> Result<Vec<f32>> {
    let mut m = vec![0f32; di * n];
    let xt = MatRef::row_major(x, n, d)?.t();
    matmul_into(&mut m, n, MatRef::row_major(w, di, d)?, xt, 1.0, true)?;
    if let Some(bias) = bias {
        for (row, b) in m.chunks_mut(n).zip(bias) {
            for v in row.iter_mut() {
                *v += b;
            }
        }
    }
    Ok(by_tiles(&m, di, n))
}

/// `(Di, N)` values re-laid per tile of [`TILE_ROWS`] columns: the `(Di, rows)` block of
/// columns `r0..` at `r0·Di`.
fn by_tiles(m: &[f32], di: usize, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(di * n);
    for r0 in (0..n).step_by(TILE_ROWS) {
        let rows = TILE_ROWS.min(n - r0);
        for row in m.chunks(n) {
            out.extend_from_slice(&row[r0..r0 + rows]);
        }
    }
    out
}

/// `(N, D)` of the shared image `x (1, N, D)`, checked against `pe (1, N, D)` and `gain (D)`.
fn image_dims(what: &str, x: &Tensor, pe: &Tensor, gain: &[f32]) -> Result<(usize, usize)> {
    let (bx, n, d) = x.dims3()?;
    if bx != 1 || pe.dims() != [1, n, d] || gain.len() != d {
        bail!(
            "{what}: image {:?}, pe {:?}, {} gains",
            x.dims(),
            pe.dims(),
            gain.len()
        )
    }
    Ok((n, d))
}

/// A projection's weight `(Di, D)` with its columns scaled by `gain (D)`: `W·diag(G)`.
fn times_gain(w: &[f32], gain: &[f32]) -> Vec<f32> {
    w.chunks(gain.len())
        .flat_map(|row| row.iter().zip(gain).map(|(w, g)| w * g))
        .collect()
}
