//! Every prompt's tokens attending to one shared, already projected image.

use super::values;
use crate::attention::Attention;
use candle_core::{bail, Module, Result, Tensor};
use rayon::prelude::*;
use segany_core::nn::{matmul_into, softmax_in_place, with_f32_values, MatRef, Scratch};

/// Query rows per task: enough to amortise packing one head's keys and values, few enough that
/// the scores (`rows × N`) stay in cache.
const TASK_ROWS: usize = 64;

/// `attn.attend(q_proj(queries), keys, values)` for the first block's token-to-image attention,
/// where the image is the same for all B prompts: `queries (B, Nq, D)`, `keys`, `values`
/// `(1, heads, N, c)` (the image's projections, heads split) → `(B, Nq, D)`.
///
/// The plain path multiplies all `B·Nq` queries with the keys at once and materialises the
/// `(heads, B·Nq, N)` scores; here each task takes one head and up to 64 query rows through
/// scores, softmax and values while they are in cache.
pub fn token_to_shared_image(
    attn: &Attention,
    queries: &Tensor,
    keys: &Tensor,
    vals: &Tensor,
) -> Result<Tensor> {
    let q = attn.q_proj().forward(queries)?;
    let (b, nq, di) = q.dims3()?;
    let (kb, h, n, c) = keys.dims4()?;
    if kb != 1 || h * c != di || vals.dims() != keys.dims() || h != attn.num_heads() {
        bail!(
            "token-to-shared-image: queries {:?}, keys {:?}, values {:?}",
            q.dims(),
            keys.dims(),
            vals.dims()
        )
    }
    let qv = values(&q)?;
    let rows = b * nq;
    let scale = 1.0 / (c as f32).sqrt();
    let tasks: Vec<(usize, usize)> = (0..h)
        .flat_map(|hh| (0..rows).step_by(TASK_ROWS).map(move |r0| (hh, r0)))
        .collect();
    let outs = with_f32_values(keys, |k| {
        with_f32_values(vals, |v| {
            tasks
                .par_iter()
                .map(|&(hh, r0)| {
                    let m = TASK_ROWS.min(rows - r0);
                    let qh = MatRef::new(&qv[r0 * di + hh * c..], m, c, di, 1)?;
                    let kh = MatRef::row_major(&k[hh * n * c..(hh + 1) * n * c], n, c)?;
                    let vh = MatRef::row_major(&v[hh * n * c..(hh + 1) * n * c], n, c)?;
                    // Overwritten by the product (no zero-fill of 1 MB per task).
                    let mut s = Scratch::take(m * n);
                    matmul_into(&mut s, n, qh, kh.t(), scale, false)?;
                    for row in s.chunks_mut(n) {
                        softmax_in_place(row);
                    }
                    let mut z = vec![0f32; m * c];
                    matmul_into(&mut z, c, MatRef::row_major(&s, m, n)?, vh, 1.0, false)?;
                    Ok(z)
                })
                .collect::<Result<Vec<_>>>()
        })
    })?;
    let mut out = vec![0f32; rows * di];
    for (&(hh, r0), z) in tasks.iter().zip(&outs) {
        for (i, zr) in z.chunks(c).enumerate() {
            out[(r0 + i) * di + hh * c..(r0 + i) * di + (hh + 1) * c].copy_from_slice(zr);
        }
    }
    let out = Tensor::from_vec(out, (b, nq, di), queries.device())?;
    attn.out_proj().forward(&out)
}

#[cfg(test)]
mod tests {
    use super::super::max_abs_diff;
    use super::*;
    use crate::test_util::{pseudo_random, randomise};
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};

    /// Same as `attend` with the shared projections, for one prompt and for more query rows
    /// than one task holds.
    #[test]
    fn matches_attend_with_shared_projections() -> Result<()> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        Attention::new(32, 4, 2, vb.pp("attn"))?;
        randomise(&varmap, 0.4)?;
        // Built after the weights are set: `Linear` copies its weight at build time.
        let attn = Attention::new(32, 4, 2, vb.pp("attn"))?;
        let image = pseudo_random(&[1, 50, 32], 2, 1.0)?;
        let (k, v) = (attn.project_keys(&image)?, attn.project_values(&image)?);
        for b in [1, 13] {
            let queries = pseudo_random(&[b, 7, 32], 1, 1.0)?;
            let fused = token_to_shared_image(&attn, &queries, &k, &v)?;
            let plain = attn.attend(&attn.project_queries(&queries)?, &k, &v)?;
            let diff = max_abs_diff(&fused, &plain)?;
            assert!(diff < 2e-5, "B={b}: {diff}");
        }
        Ok(())
    }
}
