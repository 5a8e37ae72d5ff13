//! The visual attention adapter: patches weighted by the spatial prior through `clip_img_proj`,
//! image-to-text attention over the projected words, and the Gaussian verification score that
//! rescales `norm_img(patches)`.

use crate::attention::MultiheadAttention;
use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use segany_core::nn::{layer_norm, CpuMatmul, LayerNorm};
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
        let q = self
            .clip_img_proj
            .forward(&patches.broadcast_mul(sim_map)?)?;
        let txt = self.img2text_attn.forward(&q, words, words, Some(valid))?;
        let te = self.imgtext_proj.forward(&txt)?;
        let ie = self.img_proj.forward(&q)?;
        let unit = |x: &Tensor| -> Result<Tensor> {
            let n = x
                .sqr()?
                .sum_keepdim(D::Minus1)?
                .sqrt()?
                .clamp(COS_EPS, f64::MAX)?;
            x.broadcast_div(&n)
        };
        let s = (unit(&ie)? * unit(&te)?)?.sum_keepdim(D::Minus1)?; // (B, P², 1)
        let num = s.affine(-1.0, 1.0)?.sqr()?; // (1 - s)^2: `tf_pow` is fixed at 2
        let den = (self.tf_sigma.sqr()? * 2.0)?;
        let v = num
            .broadcast_div(&den)?
            .neg()?
            .exp()?
            .broadcast_mul(&self.tf_scale)?;
        self.norm_img.forward(&q)?.broadcast_mul(&v)
    }
}
