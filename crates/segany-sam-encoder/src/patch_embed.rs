//! SAM's patch embedding (`image_encoder.patch_embed.proj`): a convolution whose stride is its
//! kernel, so each output token is the product of one non-overlapping patch with the
//! flattened kernel.
//!
//! On the CPU in f32 the patches are gathered row by row (runs of `patch` pixels, in the
//! kernel's `(C_in, ky, kx)` order) and multiplied by the kernel as one linear layer that
//! writes the `(B, g, g, C)` tokens directly, with the bias and the absolute position
//! embedding added in the product's output pass. candle's `conv2d` unfolds the same patches
//! but returns `(B, C, g, g)`, which the encoder then permuted and added the position
//! embedding to in two more passes over the tokens. Elsewhere the convolution runs as it is.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};
use rayon::prelude::*;
use segany_core::nn::{is_cpu_f32, with_f32_values, Activation, Linear};

/// `Conv2d(in, out, kernel = stride = patch)` with bias, producing channels-last tokens.
#[derive(Debug, Clone)]
pub struct PatchEmbed {
    conv: Conv2d,
    /// The kernel as a `(out, in·patch·patch)` layer, for the CPU f32 path.
    linear: Option<Linear>,
    patch: usize,
}

impl PatchEmbed {
    /// Loads `weight (out, in, patch, patch)` and `bias (out)` from `vb`
    /// (`image_encoder.patch_embed.proj`).
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        patch: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let cfg = Conv2dConfig {
            stride: patch,
            ..Default::default()
        };
        let conv = candle_nn::conv2d(in_channels, out_channels, patch, cfg, vb)?;
        let linear = match conv.bias() {
            Some(b) if is_cpu_f32(conv.weight()) && is_cpu_f32(b) => Some(Linear::new(
                conv.weight()
                    .reshape((out_channels, in_channels * patch * patch))?,
                Some(b.clone()),
            )),
            _ => None,
        };
        Ok(Self {
            conv,
            linear,
            patch,
        })
    }

    /// `(B, C_in, H, W)` pixels → `(B, H/p, W/p, C_out)` tokens (`p` the patch; a partial last
    /// row or column of pixels is dropped, as by the convolution), plus `pos (1, H/p, W/p,
    /// C_out)` when given.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use candle_nn::{VarBuilder, VarMap};
    /// use segany_sam_encoder::PatchEmbed;
    /// let varmap = VarMap::new();
    /// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let embed = PatchEmbed::new(3, 8, 4, vb)?; // SAM: PatchEmbed::new(3, 768, 16, ..)
    /// let px = Tensor::zeros((1, 3, 16, 12), DType::F32, &Device::Cpu)?;
    /// assert_eq!(embed.forward_tokens(&px, None)?.dims(), [1, 4, 3, 8]);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn forward_tokens(&self, x: &Tensor, pos: Option<&Tensor>) -> Result<Tensor> {
        let Some(linear) = self.linear.as_ref().filter(|_| is_cpu_f32(x)) else {
            let tokens = self.conv.forward(x)?.permute((0, 2, 3, 1))?;
            return match pos {
                Some(pos) => tokens.broadcast_add(pos),
                None => tokens.contiguous(),
            };
        };
        let p = self.patch;
        let (b, c, h, w) = x.dims4()?;
        let (gh, gw) = (h / p, w / p);
        if gh == 0 || gw == 0 {
            candle_core::bail!("patch embedding: a {h}×{w} image is smaller than one {p}×{p} patch")
        }
        let (k, e) = (c * p * p, linear.weight().dim(0)?);
        if c * p * p != linear.weight().dim(1)? {
            candle_core::bail!(
                "patch embedding: {c} input channels for a kernel of {} values per {p}×{p} patch",
                linear.weight().dim(1)?
            )
        }
        let rows = gh * gw;
        let mut patches = vec![0f32; b * rows * k];
        with_f32_values(x, |v| {
            patches
                .par_chunks_mut(gw * k)
                .enumerate()
                .for_each(|(image_row, dst)| {
                    let (bi, gy) = (image_row / gh, image_row % gh);
                    for (gx, patch) in dst.chunks_exact_mut(k).enumerate() {
                        for (ci, channel) in patch.chunks_exact_mut(p * p).enumerate() {
                            let plane = (bi * c + ci) * h * w;
                            for (ky, run) in channel.chunks_exact_mut(p).enumerate() {
                                let at = plane + (gy * p + ky) * w + gx * p;
                                run.copy_from_slice(&v[at..at + p]);
                            }
                        }
                    }
                });
            Ok::<(), candle_core::Error>(())
        })?;
        let mut out = vec![0f32; b * rows * e];
        let mut project = |pos: Option<&[f32]>| -> Result<()> {
            for (src, dst) in patches
                .chunks_exact(rows * k)
                .zip(out.chunks_exact_mut(rows * e))
            {
                linear.forward_into(src, rows, Activation::Identity, pos, dst)?;
            }
            Ok(())
        };
        match pos {
            Some(pos) if pos.dims() != [1, gh, gw, e] => candle_core::bail!(
                "patch embedding: position embedding {:?} for {gh}×{gw} tokens of {e}",
                pos.dims()
            ),
            Some(pos) => with_f32_values(pos, |v| project(Some(v)))?,
            None => project(None)?,
        }
        Tensor::from_vec(out, (b, gh, gw, e), x.device())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    /// The gathered product against the convolution, permuted, plus the position embedding:
    /// two images of 3 channels whose sides are not multiples of the patch (the last pixels
    /// dropped), with and without the position embedding; a position embedding of the wrong
    /// grid and an image narrower than a patch refused.
    #[test]
    fn matches_the_convolution() -> Result<()> {
        let dev = Device::Cpu;
        let (c, e, p) = (3usize, 24usize, 4usize);
        let varmap = VarMap::new();
        PatchEmbed::new(c, e, p, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
        for var in varmap.all_vars() {
            var.set(&Tensor::randn(0f32, 0.5, var.shape(), &dev)?)?;
        }
        // Built after the weights are set: `Linear` copies its weight at build time.
        let embed = PatchEmbed::new(c, e, p, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
        assert!(embed.linear.is_some());
        let x = Tensor::randn(0f32, 1.0, (2, c, 4 * p + 3, 3 * p + 1), &dev)?;
        let pos = Tensor::randn(0f32, 1.0, (1, 4, 3, e), &dev)?;
        let conv = embed.conv.forward(&x)?.permute((0, 2, 3, 1))?;
        for pos in [None, Some(&pos)] {
            let expected = match pos {
                Some(pos) => conv.broadcast_add(pos)?,
                None => conv.clone(),
            };
            let ours = embed.forward_tokens(&x, pos)?;
            assert_eq!(ours.dims(), [2, 4, 3, e]);
            let d: f32 = (&ours - &expected)?.abs()?.max_all()?.to_scalar()?;
            assert!(d < 1e-5, "with position {}: max |Δ| {d}", pos.is_some());
        }
        let err = embed
            .forward_tokens(&x, Some(&pos.narrow(2, 0, 2)?))
            .unwrap_err();
        assert!(
            err.to_string().contains("[1, 4, 2, 24] for 4×3 tokens"),
            "{err}"
        );
        let small = Tensor::zeros((1, c, 8, p - 1), DType::F32, &dev)?;
        let err = embed.forward_tokens(&small, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("8×3 image is smaller than one 4×4 patch"),
            "{err}"
        );
        Ok(())
    }
}
