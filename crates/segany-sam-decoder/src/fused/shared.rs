//! Projections of the image every prompt of a batch shares, made once per image for the
//! factored decoder path ([`super::LowRankKeys`]).

use super::{bias_or_zeros, values};
use crate::attention::Attention;
use candle_core::{bail, Result, Tensor};
use segany_core::nn::{matmul_into, with_f32_values, MatRef};

/// The image side of one token-to-image attention, projected once per image:
/// `skt = (W_k·diag(G))·xᵀ`, `pkt = W_k·peᵀ + b_k` and `svt = (W_v·diag(G))·xᵀ`, each
/// `(Di, N)`, for the image tokens `x` before any block and `G` the product of the gains of
/// the norms between `x` and this attention.
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
        let wk = values(attn.k_proj().weight())?;
        let wv = values(attn.v_proj().weight())?;
        let di = wk.len() / d;
        if wk.len() != di * d || wv.len() != di * d {
            bail!("shared projections: projections are not (Di × {d})")
        }
        let bk = bias_or_zeros(attn.k_proj(), di)?;
        let (wkg, wvg) = (times_gain(&wk, gain), times_gain(&wv, gain));
        let mut skt = vec![0f32; di * n];
        let mut pkt = vec![0f32; di * n];
        let mut svt = vec![0f32; di * n];
        with_f32_values(x, |x| {
            let xt = MatRef::row_major(x, n, d)?.t();
            matmul_into(&mut skt, n, MatRef::row_major(&wkg, di, d)?, xt, 1.0, true)?;
            matmul_into(&mut svt, n, MatRef::row_major(&wvg, di, d)?, xt, 1.0, true)
        })?;
        with_f32_values(pe, |p| {
            let pt = MatRef::row_major(p, n, d)?.t();
            matmul_into(&mut pkt, n, MatRef::row_major(&wk, di, d)?, pt, 1.0, true)
        })?;
        for (row, b) in pkt.chunks_mut(n).zip(&bk) {
            for v in row.iter_mut() {
                *v += b;
            }
        }
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
/// image: `sq = x·(W_q·diag(G))ᵀ` and `pq = pe·W_qᵀ + b_q`, each `(N, Di)`, so that
/// `q_proj(keys + pe) = c ⊙ sq + pq + Ã·(R·W_qᵀ)` for factored tokens `keys`.
#[derive(Debug, Clone)]
pub struct SharedQueries {
    pub(crate) n: usize,
    pub(crate) di: usize,
    pub(crate) sq: Vec<f32>,
    pub(crate) pq: Vec<f32>,
}

impl SharedQueries {
    /// Projects `x (1, N, D)` and `pe (1, N, D)` for `attn`'s queries, with the gains `gain`.
    pub fn new(attn: &Attention, x: &Tensor, pe: &Tensor, gain: &[f32]) -> Result<Self> {
        let (n, d) = image_dims("shared queries", x, pe, gain)?;
        let wq = values(attn.q_proj().weight())?;
        let di = wq.len() / d;
        if wq.len() != di * d {
            bail!("shared queries: q_proj is not (Di × {d})")
        }
        let bq = bias_or_zeros(attn.q_proj(), di)?;
        let wqg = times_gain(&wq, gain);
        let mut sq = vec![0f32; n * di];
        let mut pq = vec![0f32; n * di];
        with_f32_values(x, |x| {
            let x = MatRef::row_major(x, n, d)?;
            matmul_into(
                &mut sq,
                di,
                x,
                MatRef::row_major(&wqg, di, d)?.t(),
                1.0,
                true,
            )
        })?;
        with_f32_values(pe, |p| {
            let p = MatRef::row_major(p, n, d)?;
            matmul_into(
                &mut pq,
                di,
                p,
                MatRef::row_major(&wq, di, d)?.t(),
                1.0,
                true,
            )
        })?;
        for row in pq.chunks_mut(di) {
            for (v, b) in row.iter_mut().zip(&bq) {
                *v += b;
            }
        }
        Ok(Self { n, di, sq, pq })
    }
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
