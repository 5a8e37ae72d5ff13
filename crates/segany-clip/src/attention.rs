//! Multi-head self-attention with fused `in_proj` weights, plus CLIP Surgery's v-v path.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::fused_attention::{fused_attention, Geometry};
use segany_core::nn::{is_cpu_f32, linear, Linear};

/// Which keys each query attends to.
#[derive(Debug, Clone, Copy)]
pub enum Mask<'a> {
    /// Every key (the vision tower).
    None,
    /// Keys up to the query's own position: the text tower's mask, `−∞` above the diagonal
    /// ([`causal_mask`]).
    Causal,
    /// An additive mask broadcastable to `[N, N]`.
    Additive(&'a Tensor),
}

/// `nn.MultiheadAttention` as CLIP uses it (self-attention, fused q/k/v projection).
#[derive(Debug, Clone)]
pub struct Attention {
    in_proj: Linear,
    out_proj: Linear,
    heads: usize,
    scale: f64,
}

impl Attention {
    /// Reads `in_proj_weight` `[3W, W]`, `in_proj_bias` `[3W]` and `out_proj.{weight,bias}`.
    pub fn new(width: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        let w = vb.get((3 * width, width), "in_proj_weight")?;
        let b = vb.get(3 * width, "in_proj_bias")?;
        let out_proj = linear(width, width, vb.pp("out_proj"))?;
        let head_dim = width / heads;
        Ok(Self {
            in_proj: Linear::new(w, Some(b)),
            out_proj,
            heads,
            scale: (head_dim as f64).powf(-0.5),
        })
    }

    /// The arithmetic of the `in_proj` and `out_proj` products on the CPU; whether bf16 is on.
    pub fn set_cpu_matmul(&mut self, mode: segany_core::nn::CpuMatmul) -> Result<bool> {
        Ok(self.in_proj.set_cpu_matmul(mode)? & self.out_proj.set_cpu_matmul(mode)?)
    }

    /// Projects `x` `[B, N, W]` to q, k, v, each `[B, H, N, W/H]`.
    fn qkv(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, n, w) = x.dims3()?;
        let qkv = self
            .in_proj
            .forward(x)?
            .reshape((b, n, 3, self.heads, w / self.heads))?
            .permute((2, 0, 3, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        Ok((q, k, v))
    }

    /// `softmax(a · bᵀ · scale + mask) · v`, heads merged back to `[B, N, W]`.
    fn attend(&self, a: &Tensor, b: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let logits = (a.matmul(&b.t()?)? * self.scale)?;
        let logits = match mask {
            Some(m) => logits.broadcast_add(m)?,
            None => logits,
        };
        let probs = segany_core::nn::softmax_last_dim(&logits)?;
        let (bsz, h, n, dh) = v.dims4()?;
        probs.matmul(v)?.transpose(1, 2)?.reshape((bsz, n, h * dh))
    }

    /// Standard attention of `x` `[B, N, W]` with the given mask.
    ///
    /// Unmasked and causal f32 attention on the CPU (the vision and text towers) runs the
    /// fused kernel of [`segany_core::nn::fused_attention`] on the packed `in_proj` output: no
    /// `[B, H, N, N]` logits, no per-head copies of q, k and v.
    pub fn forward(&self, x: &Tensor, mask: Mask) -> Result<Tensor> {
        self.forward_inner(x, mask, None)
    }

    /// `residual + forward(x, mask)`, the sum taken in `out_proj`'s bias pass on the CPU (the
    /// same values).
    pub fn forward_add(&self, x: &Tensor, mask: Mask, residual: &Tensor) -> Result<Tensor> {
        self.forward_inner(x, mask, Some(residual))
    }

    fn forward_inner(&self, x: &Tensor, mask: Mask, residual: Option<&Tensor>) -> Result<Tensor> {
        let project = |out: &Tensor| match residual {
            Some(r) => self.out_proj.forward_add(out, r),
            None => self.out_proj.forward(out),
        };
        let fused = match mask {
            Mask::None => Some(false),
            Mask::Causal => Some(true),
            Mask::Additive(_) => None,
        };
        if let (Some(causal), true) = (fused, is_cpu_f32(x)) {
            let (b, n, w) = x.dims3()?;
            let g = Geometry {
                batch: b,
                height: 1,
                width: n,
                window: 0,
                heads: self.heads,
                head_dim: w / self.heads,
                causal,
            };
            let qkv = self.in_proj.forward(x)?;
            let out = fused_attention(&qkv, None, None, g, self.scale as f32)?;
            return project(&out.reshape((b, n, w))?);
        }
        let (q, k, v) = self.qkv(x)?;
        let causal;
        let additive = match mask {
            Mask::None => None,
            Mask::Causal => {
                causal = causal_mask(x.dim(1)?, x.device())?.to_dtype(x.dtype())?;
                Some(&causal)
            }
            Mask::Additive(m) => Some(m),
        };
        project(&self.attend(&q, &k, &v, additive)?)
    }

    /// CLIP Surgery: returns `(v-v path, original path)`, both through `out_proj`.
    /// The v-v path is `softmax(v·vᵀ·d^-½)·v` with the same projections.
    pub fn forward_surgery(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (q, k, v) = self.qkv(x)?;
        let ori = self.attend(&q, &k, &v, None)?;
        let vv = self.attend(&v, &v, &v, None)?;
        Ok((self.out_proj.forward(&vv)?, self.out_proj.forward(&ori)?))
    }
}

/// Additive causal mask `[n, n]`: 0 on and below the diagonal, -inf above.
pub fn causal_mask(n: usize, device: &candle_core::Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (n, n), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    /// The fused kernel (unmasked, causal) against the composition with an explicit additive
    /// mask (what other devices run), with a residual through `out_proj`'s bias pass.
    #[test]
    fn fused_masks_match_composition() -> Result<()> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        Attention::new(32, 4, vb.clone())?;
        for var in varmap.all_vars() {
            var.set(&Tensor::randn(0f32, 0.3, var.shape(), &dev)?)?;
        }
        // Built after the weights are set: `Linear` copies its weight at build time.
        let attn = Attention::new(32, 4, vb)?;
        let (n, w) = (13, 32);
        let x = Tensor::randn(0f32, 1.0, (2, n, w), &dev)?;
        let res = Tensor::randn(0f32, 1.0, (2, n, w), &dev)?;
        let zeros = Tensor::zeros((n, n), DType::F32, &dev)?;
        let causal = causal_mask(n, &dev)?;
        for (fused, reference) in [
            (Mask::None, Mask::Additive(&zeros)),
            (Mask::Causal, Mask::Additive(&causal)),
        ] {
            let a = attn.forward_add(&x, fused, &res)?;
            let b = (&res + attn.forward(&x, reference)?)?;
            let d: f32 = (a - b)?.abs()?.max_all()?.to_scalar()?;
            assert!(d < 1e-5, "{fused:?}: max abs diff {d}");
        }
        Ok(())
    }
}
