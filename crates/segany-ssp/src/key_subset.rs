//! Attention over the valid keys only, on the CPU in f32: the image-to-text attention of the
//! visual adapter, where 576 patch queries attend to 77 word positions of which a handful are
//! real tokens. PyTorch gives the padded keys `-inf` and runs the softmax over all 77; their
//! weights are exactly zero, so gathering the valid keys first gives the same values (up to the
//! order of the sums) for a ninth of the work, with no `(B, H, Nq, Nk)` score tensor.

use candle_core::{bail, Device, Result, Tensor};
use rayon::prelude::*;
use segany_core::nn::{matmul_into, softmax_rows_in_place, with_f32_values, MatRef};

/// `q (B, Nq, D)`, `k`, `v (B, Nk, D)` (projected, heads side by side), `key_valid (B, Nk)`
/// non-zero for the keys that may be attended to (all when `None`) → the attention output
/// `(B, Nq, D)` with heads merged, before the output projection. Scores are scaled by
/// `head_dim^-0.5`. A sample without a valid key gets NaN, as PyTorch's softmax over `-inf`
/// does.
pub(crate) fn attend_valid_keys(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_valid: Option<&Tensor>,
    heads: usize,
) -> Result<Tensor> {
    let (b, nq, d) = q.dims3()?;
    let nk = k.dim(1)?;
    if k.dims() != [b, nk, d] || v.dims() != [b, nk, d] {
        bail!(
            "keys {:?} and values {:?} do not match queries {:?}",
            k.dims(),
            v.dims(),
            q.dims()
        );
    }
    if heads == 0 || !d.is_multiple_of(heads) {
        bail!("attention width {d} is not divisible by {heads} heads");
    }
    let valid: Vec<bool> = match key_valid {
        Some(m) => {
            if m.dims() != [b, nk] {
                bail!("key mask is {:?}, expected ({b}, {nk})", m.dims());
            }
            with_f32_values(m, |m| {
                Ok::<_, candle_core::Error>(m.iter().map(|&x| x != 0.0).collect())
            })?
        }
        None => vec![true; b * nk],
    };
    let hd = d / heads;
    let scale = (hd as f32).powf(-0.5);
    let mut out = vec![0f32; b * nq * d];
    with_f32_values(q, |q| {
        with_f32_values(k, |k| {
            with_f32_values(v, |v| {
                for (s, out) in out.chunks_exact_mut(nq * d).enumerate() {
                    let keep: Vec<usize> = (0..nk).filter(|&j| valid[s * nk + j]).collect();
                    if keep.is_empty() {
                        out.fill(f32::NAN);
                        continue;
                    }
                    let gather = |x: &[f32]| -> Vec<f32> {
                        let rows = &x[s * nk * d..(s + 1) * nk * d];
                        keep.iter()
                            .flat_map(|&j| rows[j * d..(j + 1) * d].iter().copied())
                            .collect()
                    };
                    let (ks, vs) = (gather(k), gather(v));
                    let qs = &q[s * nq * d..(s + 1) * nq * d];
                    let per_head = (0..heads)
                        .into_par_iter()
                        .map(|h| {
                            one_head(
                                qs,
                                &ks,
                                &vs,
                                (nq, keep.len(), d),
                                h * hd..(h + 1) * hd,
                                scale,
                            )
                        })
                        .collect::<Result<Vec<_>>>()?;
                    for (h, o) in per_head.iter().enumerate() {
                        for (dst, src) in out.chunks_exact_mut(d).zip(o.chunks_exact(hd)) {
                            dst[h * hd..(h + 1) * hd].copy_from_slice(src);
                        }
                    }
                }
                Ok::<_, candle_core::Error>(())
            })
        })
    })?;
    Tensor::from_vec(out, (b, nq, d), &Device::Cpu)
}

/// One head's `softmax(scale · Q_h K_hᵀ) V_h`, `(Nq, head_dim)` row-major; `q`, `k`, `v` hold
/// `d`-wide rows and the head is the column range `cols`.
fn one_head(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (nq, nk, d): (usize, usize, usize),
    cols: std::ops::Range<usize>,
    scale: f32,
) -> Result<Vec<f32>> {
    let hd = cols.len();
    let qh = MatRef::new(&q[cols.start..], nq, hd, d, 1)?;
    let kh_t = MatRef::new(&k[cols.start..], nk, hd, d, 1)?.t();
    let vh = MatRef::new(&v[cols.start..], nk, hd, d, 1)?;
    let mut p = vec![0f32; nq * nk];
    matmul_into(&mut p, nk, qh, kh_t, scale, false)?;
    softmax_rows_in_place(&mut p, nk);
    let mut o = vec![0f32; nq * hd];
    matmul_into(&mut o, hd, MatRef::row_major(&p, nq, nk)?, vh, 1.0, false)?;
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed values in about `[-scale, scale]`, different per `seed`.
    fn values(n: usize, seed: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0) * scale)
            .collect()
    }

    /// PyTorch's recipe in f64 loops: every key scored, masked keys set to `-inf`, softmax
    /// over all of them.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        valid: &[f32],
        (b, nq, nk, d, heads): (usize, usize, usize, usize, usize),
    ) -> Vec<f64> {
        let hd = d / heads;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut out = vec![0f64; b * nq * d];
        for s in 0..b {
            for h in 0..heads {
                for i in 0..nq {
                    let qi = &q[(s * nq + i) * d + h * hd..][..hd];
                    let scores: Vec<f64> = (0..nk)
                        .map(|j| {
                            if valid[s * nk + j] == 0.0 {
                                return f64::NEG_INFINITY;
                            }
                            let kj = &k[(s * nk + j) * d + h * hd..][..hd];
                            qi.iter()
                                .zip(kj)
                                .map(|(&a, &b)| a as f64 * b as f64)
                                .sum::<f64>()
                                * scale
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|&x| (x - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for c in 0..hd {
                        out[(s * nq + i) * d + h * hd + c] = (0..nk)
                            .map(|j| e[j] / sum * v[(s * nk + j) * d + h * hd + c] as f64)
                            .sum();
                    }
                }
            }
        }
        out
    }

    /// A prefix of valid keys (as CLIP's padded token ids give), scattered valid keys, a single
    /// one, and none (NaN, as PyTorch): each sample against the `-inf` recipe in f64.
    #[test]
    fn matches_masking_every_key() -> Result<()> {
        let (b, nq, nk, d, heads) = (4, 13, 11, 24, 3);
        let dev = Device::Cpu;
        let q = values(b * nq * d, 1, 2.0);
        let k = values(b * nk * d, 2, 2.0);
        let v = values(b * nk * d, 3, 1.0);
        let mut valid = vec![0f32; b * nk];
        valid[..5].fill(1.0);
        for j in [0, 3, 4, 9, 10] {
            valid[nk + j] = 1.0;
        }
        valid[2 * nk + 7] = 1.0;
        let want = reference(&q, &k, &v, &valid, (b, nq, nk, d, heads));
        let t = |x: &[f32], n: usize| Tensor::from_vec(x.to_vec(), (b, n, d), &dev);
        let mask = Tensor::from_vec(valid, (b, nk), &dev)?;
        let got = attend_valid_keys(&t(&q, nq)?, &t(&k, nk)?, &t(&v, nk)?, Some(&mask), heads)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let per_sample = nq * d;
        let mut worst = 0f64;
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            if i / per_sample == 3 {
                assert!(g.is_nan(), "sample without valid keys: {g} at {i}");
            } else {
                worst = worst.max((g as f64 - w).abs());
            }
        }
        assert!(worst < 2e-6, "max |Δ| {worst:e}");

        // Without a mask every key counts.
        let all = vec![1f32; b * nk];
        let want = reference(&q, &k, &v, &all, (b, nq, nk, d, heads));
        let got = attend_valid_keys(&t(&q, nq)?, &t(&k, nk)?, &t(&v, nk)?, None, heads)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let worst = got
            .iter()
            .zip(&want)
            .map(|(&g, &w)| (g as f64 - w).abs())
            .fold(0f64, f64::max);
        assert!(worst < 2e-6, "max |Δ| {worst:e}");
        Ok(())
    }

    #[test]
    fn rejects_mismatched_shapes() -> Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 4, 8), candle_core::DType::F32, &dev)?;
        let kv = Tensor::zeros((1, 5, 8), candle_core::DType::F32, &dev)?;
        let short = Tensor::zeros((1, 5, 6), candle_core::DType::F32, &dev)?;
        let mask = Tensor::ones((1, 4), candle_core::DType::F32, &dev)?;
        assert!(attend_valid_keys(&q, &short, &kv, None, 2).is_err());
        assert!(attend_valid_keys(&q, &kv, &kv, None, 3).is_err());
        assert!(attend_valid_keys(&q, &kv, &kv, Some(&mask), 2).is_err());
        assert!(attend_valid_keys(&q, &kv, &kv, None, 2).is_ok());
        Ok(())
    }
}
