//! Attention of the two-way transformer, with optional down-projection of q/k/v.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::{linear, Linear};

/// `q_proj`, `k_proj`, `v_proj` to `dim / downsample_rate`, multi-head softmax attention,
/// `out_proj` back to `dim`.
#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
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
        if num_heads == 0 || internal % num_heads != 0 {
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
        })
    }

    fn separate_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        x.reshape((b, n, self.num_heads, c / self.num_heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Attends queries `q (B, Nq, D)` to keys `k (B, Nk, D)` with values `v (B, Nk, D)`.
    ///
    /// Either side may have batch 1 while the other has batch B (an image shared by B prompts):
    /// its projection then runs once. Shared keys and values: the B·Nq queries attend as one
    /// batch. Shared queries: one product with every prompt's keys, a softmax per prompt.
    pub fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let (bq, bk) = (q.dim(0)?, k.dim(0)?);
        if bk == 1 && bq > 1 {
            return self.forward_shared_keys(q, k, v);
        }
        if bq == 1 && bk > 1 {
            return self.forward_shared_queries(q, k, v);
        }
        let q = self.separate_heads(&self.q_proj.forward(q)?)?;
        let k = self.separate_heads(&self.k_proj.forward(k)?)?;
        let v = self.separate_heads(&self.v_proj.forward(v)?)?;
        let (b, h, n, c) = q.dims4()?;
        let attn = (q.matmul(&k.t()?)? / (c as f64).sqrt())?;
        let attn = candle_nn::ops::softmax_last_dim(&attn)?;
        let out = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, h * c))?;
        self.out_proj.forward(&out)
    }

    /// `q (B, Nq, D)` against keys and values `(1, Nk, D)` shared by the batch.
    fn forward_shared_keys(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let (b, nq, d) = q.dims3()?;
        let folded = q.reshape((1, b * nq, d))?;
        self.forward(&folded, k, v)?.reshape((b, nq, ()))
    }

    /// Queries `(1, Nq, D)` shared by the batch against keys and values `(B, Nk, D)`.
    fn forward_shared_queries(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let q = self.separate_heads(&self.q_proj.forward(q)?)?.squeeze(0)?; // (h, Nq, c)
        let k = self.separate_heads(&self.k_proj.forward(k)?)?; // (B, h, Nk, c)
        let v = self.separate_heads(&self.v_proj.forward(v)?)?;
        let (b, h, nk, c) = k.dims4()?;
        let nq = q.dim(1)?;
        // Every prompt's keys side by side: (h, c, B·Nk).
        let keys = k.permute((1, 3, 0, 2))?.contiguous()?.reshape((h, c, b * nk))?;
        let attn = (q.matmul(&keys)? / (c as f64).sqrt())?; // (h, Nq, B·Nk)
        let attn = candle_nn::ops::softmax_last_dim(&attn.reshape((h, nq, b, nk))?)?;
        let attn = attn.permute((2, 0, 1, 3))?.contiguous()?; // (B, h, Nq, Nk)
        let out = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, nq, h * c))?;
        self.out_proj.forward(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    /// A batch-1 side (an image shared by several prompts) gives what broadcasting it first
    /// gives, on both sides.
    #[test]
    fn shared_side_equals_broadcast() -> Result<()> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let attn = Attention::new(16, 2, 2, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
        for var in varmap.all_vars() {
            var.set(&Tensor::randn(0f32, 0.5, var.shape(), &dev)?)?;
        }
        let tokens = Tensor::randn(0f32, 1.0, (3, 5, 16), &dev)?;
        let image = Tensor::randn(0f32, 1.0, (1, 12, 16), &dev)?;
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
}
