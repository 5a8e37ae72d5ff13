//! Attention of the two-way transformer, with optional down-projection of q/k/v.

use crate::fused::values;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::{is_cpu_f32, linear, Linear};
use std::sync::{Arc, OnceLock};

/// `q_proj`, `k_proj`, `v_proj` to `dim / downsample_rate`, multi-head softmax attention,
/// `out_proj` back to `dim`.
#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
    /// The projections as plain values for the fused CPU kernels, made on first use and
    /// shared by clones.
    values: Arc<OnceLock<ProjectionValues>>,
}

/// An [`Attention`]'s four projections as f32 values: each weight row-major `(out, in)` (the
/// checkpoint's layout) and its bias, zeros where it has none.
#[derive(Debug)]
pub(crate) struct ProjectionValues {
    pub(crate) q: Vec<f32>,
    pub(crate) bq: Vec<f32>,
    pub(crate) k: Vec<f32>,
    pub(crate) bk: Vec<f32>,
    pub(crate) v: Vec<f32>,
    pub(crate) bv: Vec<f32>,
    pub(crate) o: Vec<f32>,
    pub(crate) bo: Vec<f32>,
}

impl ProjectionValues {
    fn new(a: &Attention) -> Result<Self> {
        let weight = |l: &Linear| values(l.weight());
        let bias = |l: &Linear| -> Result<Vec<f32>> {
            match l.bias() {
                Some(b) => values(b),
                None => Ok(vec![0.0; l.weight().dim(0)?]),
            }
        };
        Ok(Self {
            q: weight(&a.q_proj)?,
            bq: bias(&a.q_proj)?,
            k: weight(&a.k_proj)?,
            bk: bias(&a.k_proj)?,
            v: weight(&a.v_proj)?,
            bv: bias(&a.v_proj)?,
            o: weight(&a.out_proj)?,
            bo: bias(&a.out_proj)?,
        })
    }
}

impl Attention {
    /// Loads the layer.
    pub fn new(
        dim: usize,
        num_heads: usize,
        downsample_rate: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let internal = dim / downsample_rate.max(1);
        if num_heads == 0 || !internal.is_multiple_of(num_heads) {
            candle_core::bail!(
                "{}: {num_heads} heads do not divide width {internal}",
                vb.prefix()
            );
        }
        Ok(Self {
            q_proj: linear(dim, internal, vb.pp("q_proj"))?,
            k_proj: linear(dim, internal, vb.pp("k_proj"))?,
            v_proj: linear(dim, internal, vb.pp("v_proj"))?,
            out_proj: linear(internal, dim, vb.pp("out_proj"))?,
            num_heads,
            values: Arc::default(),
        })
    }

    /// The projections as f32 values ([`ProjectionValues`]), copied out of the tensors once.
    pub(crate) fn values(&self) -> Result<&ProjectionValues> {
        if self.values.get().is_none() {
            // Another thread may have set it meanwhile: both made the same values.
            let _ = self.values.set(ProjectionValues::new(self)?);
        }
        match self.values.get() {
            Some(v) => Ok(v),
            None => candle_core::bail!("attention: projection values missing"),
        }
    }

    /// Number of heads.
    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// `q_proj`.
    pub fn q_proj(&self) -> &Linear {
        &self.q_proj
    }

    /// `k_proj`.
    pub fn k_proj(&self) -> &Linear {
        &self.k_proj
    }

    /// `v_proj`.
    pub fn v_proj(&self) -> &Linear {
        &self.v_proj
    }

    /// `out_proj`.
    pub fn out_proj(&self) -> &Linear {
        &self.out_proj
    }

    fn separate_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        x.reshape((b, n, self.num_heads, c / self.num_heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// `q_proj` split into heads: `(B, N, D)` → `(B, heads, N, c)`.
    pub fn project_queries(&self, q: &Tensor) -> Result<Tensor> {
        self.separate_heads(&self.q_proj.forward(q)?)
    }

    /// `k_proj` split into heads: `(B, N, D)` → `(B, heads, N, c)`.
    pub fn project_keys(&self, k: &Tensor) -> Result<Tensor> {
        self.separate_heads(&self.k_proj.forward(k)?)
    }

    /// `v_proj` split into heads: `(B, N, D)` → `(B, heads, N, c)`.
    pub fn project_values(&self, v: &Tensor) -> Result<Tensor> {
        self.separate_heads(&self.v_proj.forward(v)?)
    }

    /// Attends queries `q (B, Nq, D)` to keys `k (B, Nk, D)` with values `v (B, Nk, D)`.
    ///
    /// Either side may have batch 1 while the other has batch B (an image shared by B prompts):
    /// its projection then runs once (see [`Attention::attend`]).
    pub fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        if few_tokens(q, k, v, self.num_heads)? {
            let out = attend_few(
                &self.q_proj.forward(q)?,
                &self.k_proj.forward(k)?,
                &self.v_proj.forward(v)?,
                self.num_heads,
            )?;
            return self.out_proj.forward(&out);
        }
        self.attend(
            &self.project_queries(q)?,
            &self.project_keys(k)?,
            &self.project_values(v)?,
        )
    }

    /// Softmax attention of projected heads and `out_proj`: `q (Bq, h, Nq, c)`,
    /// `k`, `v (Bk, h, Nk, c)` → `(B, Nq, D)`.
    ///
    /// `Bq = Bk`, or one of them is 1 (shared by the batch). Shared keys and values: the
    /// B·Nq queries attend as one batch. Shared queries: one product with every prompt's keys,
    /// a softmax per prompt.
    pub fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let (bq, h, nq, c) = q.dims4()?;
        let (bk, _, nk, _) = k.dims4()?;
        let scale = (c as f64).sqrt();
        let out = if bq == bk {
            let attn = segany_core::nn::softmax_last_dim(&(q.matmul(&k.t()?)? / scale)?)?;
            attn.matmul(v)?.transpose(1, 2)?
        } else if bk == 1 {
            // (B, h, Nq, c) -> (1, h, B·Nq, c): every prompt's queries against the one image.
            let q = q
                .transpose(0, 1)?
                .contiguous()?
                .reshape((1, h, bq * nq, c))?;
            let attn = segany_core::nn::softmax_last_dim(&(q.matmul(&k.t()?)? / scale)?)?;
            attn.matmul(v)?
                .reshape((h, bq, nq, c))?
                .permute((1, 2, 0, 3))?
        } else if bq == 1 {
            // Every prompt's keys side by side: (h, c, B·Nk).
            let keys = k
                .permute((1, 3, 0, 2))?
                .contiguous()?
                .reshape((h, c, bk * nk))?;
            let attn = (q.squeeze(0)?.matmul(&keys)? / scale)?; // (h, Nq, B·Nk)
            let attn = segany_core::nn::softmax_last_dim(&attn.reshape((h, nq, bk, nk))?)?;
            let attn = attn.permute((2, 0, 1, 3))?.contiguous()?; // (B, h, Nq, Nk)
            attn.matmul(v)?.transpose(1, 2)?
        } else {
            candle_core::bail!("attention: query batch {bq} and key batch {bk} do not broadcast")
        };
        let b = bq.max(bk);
        self.out_proj.forward(&out.reshape((b, nq, h * c))?)
    }
}

/// Scores per call up to which [`Attention::forward`] attends with plain loops (the tokens'
/// self-attention: 7 tokens, 8 heads per prompt): as tensor operations, the head splits,
/// products, softmax and merges cost more in allocations and thread wake-ups than in
/// arithmetic.
const FEW_TOKEN_SCORES: usize = 1 << 15;

/// Whether [`attend_few`] takes `q (B, Nq, D)`, `k`, `v (B, Nk, D)`: f32 on the CPU, one batch
/// size, few scores.
fn few_tokens(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Result<bool> {
    if !(is_cpu_f32(q) && is_cpu_f32(k) && is_cpu_f32(v)) || q.rank() != 3 || k.rank() != 3 {
        return Ok(false);
    }
    let (bq, nq, _) = q.dims3()?;
    let (bk, nk, _) = k.dims3()?;
    Ok(bq == bk && v.dim(0)? == bk && bq * heads * nq * nk <= FEW_TOKEN_SCORES)
}

/// Softmax attention of projected `q (B, Nq, Di)` to `k`, `v (B, Nk, Di)` with `heads` heads,
/// heads merged: `(B, Nq, Di)` (before `out_proj`), as [`Attention::attend`] computes it.
fn attend_few(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, nq, di) = q.dims3()?;
    let nk = k.dim(1)?;
    if k.dims() != [b, nk, di] || v.dims() != [b, nk, di] || heads == 0 || di % heads != 0 {
        candle_core::bail!(
            "attention: queries {:?}, keys {:?}, values {:?} for {heads} heads",
            q.dims(),
            k.dims(),
            v.dims()
        )
    }
    let c = di / heads;
    let scale = 1.0 / (c as f32).sqrt();
    let (qv, kv, vv) = (values(q)?, values(k)?, values(v)?);
    let mut out = vec![0f32; b * nq * di];
    let mut p = vec![0f32; nk];
    for bb in 0..b {
        let (qb, kb, vb) = (
            &qv[bb * nq * di..(bb + 1) * nq * di],
            &kv[bb * nk * di..(bb + 1) * nk * di],
            &vv[bb * nk * di..(bb + 1) * nk * di],
        );
        let ob = &mut out[bb * nq * di..(bb + 1) * nq * di];
        for h in 0..heads {
            let head = h * c..(h + 1) * c;
            for (qi, oi) in qb.chunks(di).zip(ob.chunks_mut(di)) {
                let qh = &qi[head.clone()];
                for (s, kj) in p.iter_mut().zip(kb.chunks(di)) {
                    *s = segany_core::nn::dot(qh, &kj[head.clone()]) * scale;
                }
                segany_core::nn::softmax_in_place(&mut p);
                let oh = &mut oi[head.clone()];
                for (&pj, vj) in p.iter().zip(vb.chunks(di)) {
                    for (o, &x) in oh.iter_mut().zip(&vj[head.clone()]) {
                        *o += pj * x;
                    }
                }
            }
        }
    }
    Tensor::from_vec(out, (b, nq, di), q.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{pseudo_random, randomise};
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    /// A batch-1 side (an image shared by several prompts) gives what broadcasting it first
    /// gives, on both sides.
    #[test]
    fn shared_side_equals_broadcast() -> Result<()> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        Attention::new(16, 2, 2, vb.clone())?;
        randomise(&varmap, 0.5)?;
        // Built after the weights are set: `Linear` copies its weight at build time.
        let attn = Attention::new(16, 2, 2, vb)?;
        let tokens = pseudo_random(&[3, 5, 16], 1, 1.0)?;
        let image = pseudo_random(&[1, 12, 16], 2, 1.0)?;
        let wide = image.broadcast_as((3, 12, 16))?.contiguous()?;
        let max = |a: Tensor, b: Tensor| -> Result<f32> {
            assert_eq!(a.dims(), b.dims());
            (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
        };
        let d = max(
            attn.forward(&tokens, &image, &image)?,
            attn.forward(&tokens, &wide, &wide)?,
        )?;
        assert!(d < 1e-5, "shared keys: {d}");
        let d = max(
            attn.forward(&image, &tokens, &tokens)?,
            attn.forward(&wide, &tokens, &tokens)?,
        )?;
        assert!(d < 1e-5, "shared queries: {d}");
        Ok(())
    }

    /// The plain-loop path for few tokens (what `forward` takes on the CPU) gives what the
    /// tensor operations of `attend` give, for one prompt and a batch, with and without a
    /// down-projection (head widths 8 and 4); large inputs keep the tensor path.
    #[test]
    fn few_token_loops_match_tensor_ops() -> Result<()> {
        let dev = Device::Cpu;
        for rate in [1, 2] {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
            Attention::new(16, 2, rate, vb.clone())?;
            randomise(&varmap, 0.5)?;
            let attn = Attention::new(16, 2, rate, vb)?;
            for b in [1, 3] {
                let q = pseudo_random(&[b, 7, 16], 1, 1.0)?;
                let k = pseudo_random(&[b, 5, 16], 2, 1.0)?;
                let v = pseudo_random(&[b, 5, 16], 3, 1.0)?;
                assert!(few_tokens(&q, &k, &v, 2)?);
                let fast = attn.forward(&q, &k, &v)?;
                let ops = attn.attend(
                    &attn.project_queries(&q)?,
                    &attn.project_keys(&k)?,
                    &attn.project_values(&v)?,
                )?;
                let d = (&fast - &ops)?.abs()?.max_all()?.to_scalar::<f32>()?;
                let size = ops.abs()?.max_all()?.to_scalar::<f32>()?;
                // f32 rounding in another order: within a millionth of the outputs' size.
                assert!(
                    d < 1e-6 * size && size > 0.1,
                    "rate {rate}, batch {b}: {d} (outputs up to {size})"
                );
            }
        }
        let big = Tensor::zeros((1, 4096, 16), DType::F32, &dev)?;
        assert!(!few_tokens(&big, &big, &big, 2)?);
        Ok(())
    }
}
