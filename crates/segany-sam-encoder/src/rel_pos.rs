//! Decomposed relative positions (MViTv2), as SAM's `get_rel_pos` / `add_decomposed_rel_pos`.

use candle_core::{Result, Tensor};

/// Linear interpolation of `rows` rows of `cols` values to `out_rows` rows, as
/// `F.interpolate(mode="linear", align_corners=False)` along the row axis (f32 arithmetic).
pub fn interpolate_linear(table: &[f32], rows: usize, cols: usize, out_rows: usize) -> Vec<f32> {
    let scale = rows as f32 / out_rows as f32;
    let mut out = vec![0f32; out_rows * cols];
    for o in 0..out_rows {
        let real = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
        let i0 = (real.floor() as usize).min(rows.saturating_sub(1));
        let lambda = (real - i0 as f32).clamp(0.0, 1.0);
        let i1 = if i0 + 1 < rows { i0 + 1 } else { i0 };
        for c in 0..cols {
            out[o * cols + c] =
                (1.0 - lambda) * table[i0 * cols + c] + lambda * table[i1 * cols + c];
        }
    }
    out
}

/// Relative-position embeddings for every (query, key) pair along one axis: a
/// `(q_size, k_size, C)` tensor gathered from the `(L, C)` table `rel_pos`, which is first
/// resized to `2·max(q, k) − 1` rows when its length differs.
pub fn get_rel_pos(q_size: usize, k_size: usize, rel_pos: &Tensor) -> Result<Tensor> {
    let (len, c) = rel_pos.dims2()?;
    let max_rel = 2 * q_size.max(k_size) - 1;
    let dtype = rel_pos.dtype();
    let table: Vec<f32> = rel_pos
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    let table = if len != max_rel {
        interpolate_linear(&table, len, c, max_rel)
    } else {
        table
    };
    let (qf, kf) = (q_size as f64, k_size as f64);
    let q_scale = (kf / qf).max(1.0);
    let k_scale = (qf / kf).max(1.0);
    let mut out = Vec::with_capacity(q_size * k_size * c);
    for i in 0..q_size {
        for j in 0..k_size {
            let coord = (i as f64 * q_scale - j as f64 * k_scale) + (kf - 1.0) * k_scale;
            let idx = (coord as usize).min(max_rel - 1);
            out.extend_from_slice(&table[idx * c..(idx + 1) * c]);
        }
    }
    Tensor::from_vec(out, (q_size, k_size, c), rel_pos.device())?.to_dtype(dtype)
}

/// The key-side indicators that turn the decomposed relative-position terms into part of the
/// attention product: `(kh·kw, kh + kw)` with ones at `[(a, b), a]` and `[(a, b), kh + b]`.
///
/// With queries widened to `[q·scale, rel_h, rel_w]` and keys to `[k, indicators]`, one
/// product gives `q·kᵀ·scale + rel_h[·, a] + rel_w[·, b]` for key `(a, b)`: the biased logits,
/// without the broadcast additions over the whole `N × N` matrix.
pub fn key_indicators(
    kh: usize,
    kw: usize,
    dtype: candle_core::DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let width = kh + kw;
    let mut v = vec![0f32; kh * kw * width];
    for a in 0..kh {
        for b in 0..kw {
            let row = (a * kw + b) * width;
            v[row + a] = 1.0;
            v[row + kh + b] = 1.0;
        }
    }
    Tensor::from_vec(v, (kh * kw, width), device)?.to_dtype(dtype)
}

/// `q_scaled · kᵀ` plus the decomposed terms `rel_h (B, N, kh)` and `rel_w (B, N, kw)` from
/// [`rel_pos_terms`], as one product of widened queries and keys (`keys` from
/// [`key_indicators`]): `(B, N, kh·kw)`, the values of [`add_decomposed_rel_pos`].
pub fn rel_pos_logits(
    q_scaled: &Tensor,
    k: &Tensor,
    (rel_h, rel_w): (&Tensor, &Tensor),
    keys: &Tensor,
) -> Result<Tensor> {
    let (b, n, _) = k.dims3()?;
    let keys = keys.broadcast_as((b, n, keys.dim(1)?))?;
    // (candle concatenates along the last dimension through transposes: the results are
    // made contiguous for CUDA's batched product.)
    let qa = Tensor::cat(&[q_scaled, rel_h, rel_w], 2)?.contiguous()?;
    let ka = Tensor::cat(&[k, &keys], 2)?.contiguous()?;
    qa.matmul(&ka.t()?)
}

/// Adds the decomposed relative-position terms to attention logits.
///
/// `attn`: `(B, qh·qw, kh·kw)`; `q`: the unscaled queries `(B, qh·qw, C)`; `rh`: `(qh, kh, C)`;
/// `rw`: `(qw, kw, C)` from [`get_rel_pos`].
pub fn add_decomposed_rel_pos(
    attn: &Tensor,
    q: &Tensor,
    rh: &Tensor,
    rw: &Tensor,
    q_hw: (usize, usize),
    k_hw: (usize, usize),
) -> Result<Tensor> {
    let (qh, qw) = q_hw;
    let (kh, kw) = k_hw;
    let b = q.dim(0)?;
    let (rel_h, rel_w) = rel_pos_terms(q, rh, rw, q_hw)?;
    attn.reshape((b, qh, qw, kh, kw))?
        .broadcast_add(&rel_h.reshape((b, qh, qw, kh, 1))?)?
        .broadcast_add(&rel_w.reshape((b, qh, qw, 1, kw))?)?
        .reshape((b, qh * qw, kh * kw))
}

/// The decomposed relative-position terms for queries `q` `(B, h·w, C)` (unscaled) and tables
/// `rh (h, kh, C)`, `rw (w, kw, C)` from [`get_rel_pos`]:
/// `rel_h (B, h·w, kh)` with `rel_h[b, (i,j), k] = q[b,(i,j)] · rh[i, k]` and
/// `rel_w (B, h·w, kw)` with `rel_w[b, (i,j), k] = q[b,(i,j)] · rw[j, k]`.
pub fn rel_pos_terms(
    q: &Tensor,
    rh: &Tensor,
    rw: &Tensor,
    hw: (usize, usize),
) -> Result<(Tensor, Tensor)> {
    let (h, w) = hw;
    let (b, n, c) = q.dims3()?;
    let (kh, kw) = (rh.dim(1)?, rw.dim(1)?);
    let r_q = q.reshape((b, h, w, c))?;
    // rel_h[b,i,j,k] = sum_c r_q[b,i,j,c] * rh[i,k,c]: one batched matmul over i.
    let rel_h = r_q
        .permute((1, 0, 2, 3))?
        .contiguous()?
        .reshape((h, b * w, c))?
        .matmul(&rh.transpose(1, 2)?.contiguous()?)?
        .reshape((h, b, w, kh))?
        .permute((1, 0, 2, 3))?
        .reshape((b, n, kh))?;
    // rel_w[b,i,j,k] = sum_c r_q[b,i,j,c] * rw[j,k,c]: batched over j.
    let rel_w = r_q
        .permute((2, 0, 1, 3))?
        .contiguous()?
        .reshape((w, b * h, c))?
        .matmul(&rw.transpose(1, 2)?.contiguous()?)?
        .reshape((w, b, h, kw))?
        .permute((1, 2, 0, 3))?
        .reshape((b, n, kw))?;
    Ok((rel_h, rel_w))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The widened product gives the logits plus terms of the broadcast formulation.
    #[test]
    fn widened_product_equals_broadcast_terms() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let (b, h, w, c) = (2, 5, 3, 4);
        let q = values(&[b, h * w, c], 1)?;
        let k = values(&[b, h * w, c], 2)?;
        let rh = values(&[h, h, c], 3)?;
        let rw = values(&[w, w, c], 4)?;
        let q_scaled = (&q * 0.5)?;
        let reference =
            add_decomposed_rel_pos(&q_scaled.matmul(&k.t()?)?, &q, &rh, &rw, (h, w), (h, w))?;
        let terms = rel_pos_terms(&q, &rh, &rw, (h, w))?;
        let keys = key_indicators(h, w, candle_core::DType::F32, &dev)?;
        let got = rel_pos_logits(&q_scaled, &k, (&terms.0, &terms.1), &keys)?;
        let d = (got - reference)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(d < 1e-5, "max difference {d}");
        Ok(())
    }

    /// Fixed values in about `[-1.7, 1.7]`, different per `seed` (random ones made this
    /// test's 1e-6 bound on probabilities a matter of luck).
    fn values(dims: &[usize], seed: usize) -> Result<Tensor> {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 * 3.4 - 1.7)
            .collect();
        Tensor::from_vec(v, dims, &candle_core::Device::Cpu)
    }

    #[test]
    fn fused_softmax_equals_reference_formulation() -> Result<()> {
        let (b, h, w, c) = (3, 5, 4, 8);
        let q = values(&[b, h * w, c], 1)?;
        let k = values(&[b, h * w, c], 2)?;
        let rh = get_rel_pos(h, h, &values(&[2 * h - 1, c], 3)?)?;
        let rw = get_rel_pos(w, w, &values(&[7, c], 4)?)?;
        let attn = (&q * 0.3)?.matmul(&k.t()?)?;
        let reference = candle_nn::ops::softmax_last_dim(&add_decomposed_rel_pos(
            &attn,
            &q,
            &rh,
            &rw,
            (h, w),
            (h, w),
        )?)?;
        let (rel_h, rel_w) = rel_pos_terms(&q, &rh, &rw, (h, w))?;
        let fused = crate::fused_softmax::rel_pos_softmax(&attn, &rel_h, &rel_w)?;
        let diff = (reference - fused)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-6, "max diff {diff}");
        Ok(())
    }

    #[test]
    fn identity_when_length_fits_and_index_pattern() -> Result<()> {
        // q = k = 3 needs 5 rows; row r of the result for (i, j) is i - j + 2.
        let table: Vec<f32> = (0..5).map(|v| v as f32).collect();
        let t = Tensor::from_vec(table, (5, 1), &candle_core::Device::Cpu)?;
        let r: Vec<f32> = get_rel_pos(3, 3, &t)?.flatten_all()?.to_vec1()?;
        assert_eq!(r, vec![2., 1., 0., 3., 2., 1., 4., 3., 2.]);
        Ok(())
    }

    #[test]
    fn linear_interpolation_matches_hand_computation() {
        // 2 rows -> 4 rows, align_corners=False: positions -0.25(clamped 0), 0.25, 0.75, 1.25.
        let out = interpolate_linear(&[0.0, 4.0], 2, 1, 4);
        assert_eq!(out, vec![0.0, 1.0, 3.0, 4.0]);
    }
}
