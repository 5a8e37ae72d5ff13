//! The visual attention adapter: patches weighted by the spatial prior through `clip_img_proj`,
//! image-to-text attention over the projected words, and the Gaussian verification score that
//! rescales `norm_img(patches)`.

use crate::attention::MultiheadAttention;
use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use segany_core::nn::{is_cpu_f32, layer_norm, with_f32_values, CpuMatmul, LayerNorm};
use segany_sam_decoder::Mlp;

/// `clip_img_proj`, `img2text_attn`, `imgtext_proj`, `img_proj`, `tf_scale`, `tf_sigma`,
/// `norm_img`.
#[derive(Debug, Clone)]
pub struct VisualAdapter {
    clip_img_proj: Mlp,
    img2text_attn: MultiheadAttention,
    imgtext_proj: Mlp,
    img_proj: Mlp,
    tf_scale: Tensor,
    tf_sigma: Tensor,
    norm_img: LayerNorm,
}

/// `F.cosine_similarity`'s default epsilon.
const COS_EPS: f64 = 1e-8;

impl VisualAdapter {
    /// Loads the adapter from the head's root `vb`.
    pub fn new(
        clip_dim: usize,
        dim: usize,
        heads: usize,
        eps: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            clip_img_proj: Mlp::new(clip_dim, dim, dim, 3, false, vb.pp("clip_img_proj"))?,
            img2text_attn: MultiheadAttention::new(dim, heads, vb.pp("img2text_attn"))?,
            imgtext_proj: Mlp::new(dim, dim, dim, 1, false, vb.pp("imgtext_proj"))?,
            img_proj: Mlp::new(dim, dim, dim, 1, false, vb.pp("img_proj"))?,
            tf_scale: vb.get(1, "tf_scale")?,
            tf_sigma: vb.get(1, "tf_sigma")?,
            norm_img: layer_norm(dim, eps, vb.pp("norm_img"))?,
        })
    }

    /// The arithmetic of the adapter's products on the CPU ([`CpuMatmul`]; the attention
    /// itself keeps f32); whether bf16 is on.
    pub fn set_cpu_matmul(&mut self, mode: CpuMatmul) -> Result<bool> {
        Ok(self.clip_img_proj.set_cpu_matmul(mode)?
            & self.img2text_attn.set_cpu_matmul(mode)?
            & self.imgtext_proj.set_cpu_matmul(mode)?
            & self.img_proj.set_cpu_matmul(mode)?)
    }

    /// `patches (B, P², C)` (token-normalised, without CLS), `sim_map (B, P², 1)`, projected
    /// `words (B, T, 512)` and `valid (B, T)` → verified visual features `(B, P², 512)`.
    pub fn forward(
        &self,
        patches: &Tensor,
        sim_map: &Tensor,
        words: &Tensor,
        valid: &Tensor,
    ) -> Result<Tensor> {
        let q = self.clip_img_proj.forward(&scale_rows(patches, sim_map)?)?;
        let txt = self.img2text_attn.forward(&q, words, words, Some(valid))?;
        let te = self.imgtext_proj.forward(&txt)?;
        let ie = self.img_proj.forward(&q)?;
        let v = self.verification(&ie, &te)?;
        scale_rows(&self.norm_img.forward(&q)?, &v)
    }

    /// The Gaussian verification score `(B, P², 1)` of each patch:
    /// `tf_scale · exp(−(1 − cos(ie, te))² / (2·tf_sigma²))`, the cosine with
    /// `F.cosine_similarity`'s clamped norms. On the CPU in f32 one pass over the rows (the
    /// composition's operations, sums in sequence; from 64K values on candle's operations
    /// would also wake its element-wise thread pool, whose worker then spins beside the next
    /// products).
    fn verification(&self, ie: &Tensor, te: &Tensor) -> Result<Tensor> {
        if !(is_cpu_f32(ie)
            && is_cpu_f32(te)
            && is_cpu_f32(&self.tf_sigma)
            && is_cpu_f32(&self.tf_scale))
        {
            let unit = |x: &Tensor| -> Result<Tensor> {
                let n = x
                    .sqr()?
                    .sum_keepdim(D::Minus1)?
                    .sqrt()?
                    .clamp(COS_EPS, f64::MAX)?;
                x.broadcast_div(&n)
            };
            let s = (unit(ie)? * unit(te)?)?.sum_keepdim(D::Minus1)?; // (B, P², 1)
            let num = s.affine(-1.0, 1.0)?.sqr()?; // (1 - s)^2: `tf_pow` is fixed at 2
            let den = (self.tf_sigma.sqr()? * 2.0)?;
            return num
                .broadcast_div(&den)?
                .neg()?
                .exp()?
                .broadcast_mul(&self.tf_scale);
        }
        let (b, p, c) = ie.dims3()?;
        if te.dims() != [b, p, c] {
            candle_core::bail!("verification: {:?} against {:?}", ie.dims(), te.dims())
        }
        let sigma = self.tf_sigma.flatten_all()?.to_vec1::<f32>()?;
        let scale = self.tf_scale.flatten_all()?.to_vec1::<f32>()?;
        let (&[sigma], &[scale]) = (&sigma[..], &scale[..]) else {
            candle_core::bail!("tf_sigma and tf_scale must hold one value each")
        };
        let den = sigma * sigma * 2.0;
        let eps = COS_EPS as f32;
        let norm = |x: &[f32]| x.iter().map(|&v| v * v).sum::<f32>().sqrt().max(eps);
        let v = with_f32_values(ie, |ie| {
            with_f32_values(te, |te| {
                let mut out = Vec::with_capacity(b * p);
                for (i, t) in ie.chunks_exact(c).zip(te.chunks_exact(c)) {
                    let (ni, nt) = (norm(i), norm(t));
                    let s: f32 = i.iter().zip(t).map(|(&i, &t)| (i / ni) * (t / nt)).sum();
                    let d = 1.0 - s;
                    let num = d * d;
                    out.push((-(num / den)).exp() * scale);
                }
                Ok::<_, candle_core::Error>(out)
            })
        })?;
        Tensor::from_vec(v, (b, p, 1), ie.device())
    }
}

/// `x (B, N, C) ⊙ w (B, N, 1)`, each row scaled by its weight: on the CPU in f32 one pass
/// (candle's broadcast product would, from 64K values on, wake its element-wise thread pool).
fn scale_rows(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !(is_cpu_f32(x) && is_cpu_f32(w)) {
        return x.broadcast_mul(w);
    }
    let (b, n, c) = x.dims3()?;
    if w.dims() != [b, n, 1] {
        candle_core::bail!("row weights {:?} for rows {:?}", w.dims(), (b, n, c))
    }
    let out = with_f32_values(x, |x| {
        with_f32_values(w, |w| {
            let mut out = x.to_vec();
            if c > 0 {
                for (row, &w) in out.chunks_exact_mut(c).zip(w) {
                    row.iter_mut().for_each(|v| *v *= w);
                }
            }
            Ok::<_, candle_core::Error>(out)
        })
    })?;
    Tensor::from_vec(out, (b, n, c), x.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};

    /// The CPU verification score and row scaling against the formula in f64, for rows with
    /// the same, opposite and unrelated directions (cosines 1, -1 and in between).
    #[test]
    fn cpu_verification_matches_the_formula() -> Result<()> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let mut adapter = VisualAdapter::new(6, 8, 2, 1e-5, vb)?;
        adapter.tf_sigma = Tensor::new(&[0.7f32], &dev)?;
        adapter.tf_scale = Tensor::new(&[1.3f32], &dev)?;
        let ie = Tensor::randn(0f32, 1.0, (2, 5, 8), &dev)?;
        let mut te = Tensor::randn(0f32, 1.0, (2, 5, 8), &dev)?.to_vec3::<f32>()?;
        let iv = ie.to_vec3::<f32>()?;
        te[0][0] = iv[0][0].iter().map(|v| 2.0 * v).collect();
        te[1][3] = iv[1][3].iter().map(|v| -v).collect();
        let te = Tensor::new(te, &dev)?;
        let got = adapter.verification(&ie, &te)?.to_vec3::<f32>()?;
        let tv = te.to_vec3::<f32>()?;
        for b in 0..2 {
            for p in 0..5 {
                let (i, t) = (&iv[b][p], &tv[b][p]);
                let dot: f64 = i.iter().zip(t).map(|(&a, &b)| a as f64 * b as f64).sum();
                let n = |x: &[f32]| x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
                let s = dot / (n(i) * n(t));
                let want = 1.3 * (-(1.0 - s).powi(2) / (2.0 * 0.7f64.powi(2))).exp();
                let diff = (got[b][p][0] as f64 - want).abs();
                assert!(diff < 1e-6, "row ({b}, {p}): {} vs {want}", got[b][p][0]);
            }
        }
        let w = Tensor::new(&[[[2f32], [-1.0]]], &dev)?;
        let x = Tensor::new(&[[[1f32, 2.0], [3.0, 4.0]]], &dev)?;
        assert_eq!(
            scale_rows(&x, &w)?.to_vec3::<f32>()?,
            [[[2.0, 4.0], [-3.0, -4.0]]]
        );
        assert!(scale_rows(&x, &x).is_err());
        Ok(())
    }
}
