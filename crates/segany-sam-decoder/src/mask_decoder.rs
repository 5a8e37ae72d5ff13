//! The mask decoder: output tokens + prompt tokens through the two-way transformer, upscaled
//! image features, hypernetwork MLPs and the IoU head.

use crate::config::{MaskDecoderConfig, LAYER_NORM_2D_EPS};
use crate::fused;
use crate::mlp::Mlp;
use crate::transformer::{ImageTokens, PreparedKeys, TwoWayTransformer};
use crate::upscale::ConvTranspose2x2;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::{layer_norm, zeroed_output, LayerNorm};

/// One image made ready for many prompts ([`MaskDecoder::prepare`]).
#[derive(Debug, Clone)]
pub struct PreparedImage {
    keys: PreparedKeys,
    /// `(channels, height, width)` of the image embedding.
    grid: (usize, usize, usize),
}

/// The two-way transformer's output for a batch of prompts, before upscaling
/// ([`MaskDecoder::decode_tokens`]).
#[derive(Debug, Clone)]
pub struct DecodedTokens {
    /// The IoU token and the `n` mask tokens after the transformer, `(B, 1 + n, D)` (the
    /// prompts' own tokens are not taken through the final attention: nothing reads them).
    hs: Tensor,
    /// Image tokens after the transformer: `(B, h·w, D)` (batch 1 when shared), or
    /// factored per prompt.
    src: ImageTokens,
    /// IoU predictions for all mask tokens `(B, n)`.
    iou: Tensor,
}

impl DecodedTokens {
    /// IoU predictions for all mask tokens, `(B, n)`.
    pub fn iou(&self) -> &Tensor {
        &self.iou
    }
}

/// SAM's `MaskDecoder`.
#[derive(Debug, Clone)]
pub struct MaskDecoder {
    iou_token: Tensor,
    mask_tokens: Tensor,
    transformer: TwoWayTransformer,
    upscale1: ConvTranspose2x2,
    upscale_ln: LayerNorm,
    upscale2: ConvTranspose2x2,
    hypernetworks: Vec<Mlp>,
    iou_head: Mlp,
    num_mask_tokens: usize,
}

impl MaskDecoder {
    /// Loads the decoder from `vb` (usually `vb.pp("mask_decoder")`).
    pub fn new(cfg: &MaskDecoderConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        let n = cfg.num_multimask_outputs + 1;
        let up = vb.pp("output_upscaling");
        let hypernetworks = (0..n)
            .map(|i| {
                Mlp::new(
                    d,
                    d,
                    d / 8,
                    3,
                    false,
                    vb.pp("output_hypernetworks_mlps").pp(i),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            iou_token: vb.pp("iou_token").get((1, d), "weight")?,
            mask_tokens: vb.pp("mask_tokens").get((n, d), "weight")?,
            transformer: TwoWayTransformer::new(cfg, vb.pp("transformer"))?,
            upscale1: ConvTranspose2x2::new(d, d / 4, up.pp("0"))?,
            upscale_ln: layer_norm(d / 4, LAYER_NORM_2D_EPS, up.pp("1"))?,
            upscale2: ConvTranspose2x2::new(d / 4, d / 8, up.pp("3"))?,
            hypernetworks,
            iou_head: Mlp::new(
                d,
                cfg.iou_head_hidden_dim,
                n,
                cfg.iou_head_depth,
                false,
                vb.pp("iou_prediction_head"),
            )?,
            num_mask_tokens: n,
        })
    }

    /// Predicts all mask tokens: `(masks (B, n, 4h, 4w), iou (B, n))`.
    ///
    /// `image_embeddings` is `(1, D, h, w)` (shared by every prompt) or `(B, D, h, w)`;
    /// `image_pe` `(1, D, h, w)`; `sparse` `(B, N, D)`; `dense` `(B, D, h, w)` or `(1, D, h, w)`.
    pub fn predict_masks(
        &self,
        image_embeddings: &Tensor,
        image_pe: &Tensor,
        sparse: &Tensor,
        dense: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        self.predict_masks_prepared(&self.prepare(image_embeddings, image_pe, dense)?, sparse)
    }

    /// The prompt-independent part of [`Self::predict_masks`]: the image tokens plus the dense
    /// embedding, their positional encoding and the first transformer block's projections of
    /// them. For prompts without mask inputs the dense embedding is the same for every prompt
    /// (`PromptEncoder::forward` without masks), so one preparation per image serves them all.
    pub fn prepare(
        &self,
        image_embeddings: &Tensor,
        image_pe: &Tensor,
        dense: &Tensor,
    ) -> Result<PreparedImage> {
        let (_, c, h, w) = dense.dims4()?;
        // One image and one dense map for all prompts (no mask inputs) stay batch 1: the
        // transformer's first block then projects the image once.
        let src = image_embeddings.broadcast_add(dense)?;
        let pos_src = image_pe.broadcast_as((1, c, h, w))?.contiguous()?;
        Ok(PreparedImage {
            keys: self.transformer.prepare(&src, &pos_src)?,
            grid: (c, h, w),
        })
    }

    /// [`Self::predict_masks`] on a prepared image: `sparse (B, N, D)` →
    /// `(masks (B, n, 4h, 4w), iou (B, n))`.
    pub fn predict_masks_prepared(
        &self,
        image: &PreparedImage,
        sparse: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let tokens = self.decode_tokens(image, sparse)?;
        let masks = self.upscale_masks(image, &tokens, None)?;
        Ok((masks, tokens.iou))
    }

    /// The first half of [`Self::predict_masks_prepared`]: the two-way transformer and the IoU
    /// head, for all `B` prompts of `sparse (B, N, D)`. The masks follow from
    /// [`Self::upscale_masks`], for all prompts or only some: the upscaling is about half of
    /// the decoder's arithmetic, and a caller that filters masks by predicted IoU (automatic
    /// mask generation) can skip it for prompts whose masks would all be dropped.
    pub fn decode_tokens(&self, image: &PreparedImage, sparse: &Tensor) -> Result<DecodedTokens> {
        let b = sparse.dim(0)?;
        let output_tokens = Tensor::cat(&[&self.iou_token, &self.mask_tokens], 0)?;
        let (nt, d) = output_tokens.dims2()?;
        let output_tokens = output_tokens.unsqueeze(0)?.broadcast_as((b, nt, d))?;
        let tokens = Tensor::cat(
            &[&output_tokens, &sparse.to_dtype(output_tokens.dtype())?],
            1,
        )?;
        // Only the IoU and mask tokens are read from the transformer's output.
        let (hs, src) = self.transformer.forward_prepared_leading(
            &image.keys,
            &tokens,
            1 + self.num_mask_tokens,
        )?;
        let iou = self.iou_head.forward(&hs.narrow(1, 0, 1)?.squeeze(1)?)?;
        Ok(DecodedTokens { hs, src, iou })
    }

    /// The masks `(P, n, 4h, 4w)` of the prompts `select` (indices into the batch of
    /// [`Self::decode_tokens`], in that order; `None`: all `B`).
    pub fn upscale_masks(
        &self,
        image: &PreparedImage,
        tokens: &DecodedTokens,
        select: Option<&[usize]>,
    ) -> Result<Tensor> {
        let range = (0, self.num_mask_tokens);
        self.upscale_token_masks(image, tokens, select, range, None)
            .and_then(tensor_returned)
    }

    /// [`Self::upscale_masks`] for the official selection only ([`Self::selected_tokens`]):
    /// `(P, 3, 4h, 4w)` with `multimask_output`, else `(P, 1, 4h, 4w)`. The other tokens'
    /// hypernetworks and mask products are not computed.
    pub fn upscale_selected_masks(
        &self,
        image: &PreparedImage,
        tokens: &DecodedTokens,
        select: Option<&[usize]>,
        multimask_output: bool,
    ) -> Result<Tensor> {
        let range = self.selected_tokens(multimask_output);
        self.upscale_token_masks(image, tokens, select, range, None)
            .and_then(tensor_returned)
    }

    /// [`Self::upscale_selected_masks`] as f32 values into `out` (row-major, resized to the
    /// masks' length, every value overwritten), returning the dimensions `(P, K, 4h, 4w)`: for
    /// callers that upscale batch after batch (automatic mask generation), whose fresh output
    /// would be new pages each time, faulted in and zeroed by the kernel. Written in place on
    /// the CPU's factored path, copied from the tensor otherwise.
    pub fn upscale_selected_masks_into(
        &self,
        image: &PreparedImage,
        tokens: &DecodedTokens,
        select: Option<&[usize]>,
        multimask_output: bool,
        out: &mut Vec<f32>,
    ) -> Result<(usize, usize, usize, usize)> {
        let (_, h, w) = image.grid;
        let range = self.selected_tokens(multimask_output);
        let p = select.map_or(tokens.hs.dim(0)?, <[usize]>::len);
        let dims = (p, range.1, 4 * h, 4 * w);
        if let Some(t) = self.upscale_token_masks(image, tokens, select, range, Some(out))? {
            *out = t
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
        }
        Ok(dims)
    }

    /// The masks of mask tokens `start..start + len`: into `out` when given and the factored
    /// CPU path applies (then `None`), else as a tensor.
    fn upscale_token_masks(
        &self,
        image: &PreparedImage,
        tokens: &DecodedTokens,
        select: Option<&[usize]>,
        (start, len): (usize, usize),
        out: Option<&mut Vec<f32>>,
    ) -> Result<Option<Tensor>> {
        let (c, h, w) = image.grid;
        let batch = tokens.hs.dim(0)?;
        let all: Vec<usize>;
        let sel = match select {
            Some(sel) => sel,
            None => {
                all = (0..batch).collect();
                &all
            }
        };
        if sel.is_empty() {
            let (dev, dtype) = (tokens.hs.device(), tokens.hs.dtype());
            return Tensor::zeros((0, len, 4 * h, 4 * w), dtype, dev).map(Some);
        }
        if let Some(bad) = sel.iter().find(|&&i| i >= batch) {
            candle_core::bail!("mask decoder: prompt {bad} selected from a batch of {batch}")
        }
        let idx = Tensor::from_vec(
            sel.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            sel.len(),
            tokens.hs.device(),
        )?;
        let everything = select.is_none();
        let hs = if everything {
            tokens.hs.clone()
        } else {
            tokens.hs.index_select(&idx, 0)?
        };
        let b = hs.dim(0)?;
        let hyper_in = self
            .hypernetworks
            .iter()
            .enumerate()
            .skip(start)
            .take(len)
            .map(|(i, mlp)| mlp.forward(&hs.narrow(1, 1 + i, 1)?.squeeze(1)?))
            .collect::<Result<Vec<_>>>()?;
        let hyper_in = Tensor::stack(&hyper_in, 1)?;
        let src = match &tokens.src {
            ImageTokens::Factored(f) if fused::applies(&hyper_in) => {
                // Into the caller's memory, or into a fresh output returned as the tensor.
                let mut own = None;
                let buf = match out {
                    Some(buf) => buf,
                    None => own.insert(zeroed_output(sel.len() * len * 16 * h * w)),
                };
                fused::upscale_factored_masks_into(
                    f.low_rank()?,
                    f.image(),
                    sel,
                    (h, w),
                    &self.upscale1,
                    &self.upscale_ln,
                    &self.upscale2,
                    &hyper_in,
                    buf,
                )?;
                let dims = (sel.len(), len, 4 * h, 4 * w);
                return own
                    .map(|v| Tensor::from_vec(v, dims, hyper_in.device()))
                    .transpose();
            }
            ImageTokens::Factored(f) => f.materialise()?,
            ImageTokens::Dense(t) => t.clone(),
        };
        let src = if src.dim(0)? == batch && batch > 1 && !everything {
            src.index_select(&idx, 0)?
        } else {
            src
        };
        if fused::applies(&src) && fused::applies(&hyper_in) {
            return fused::upscale_masks(
                &src,
                (h, w),
                &self.upscale1,
                &self.upscale_ln,
                &self.upscale2,
                &hyper_in,
            )
            .map(Some);
        }
        let src = if src.dim(0)? == b {
            src
        } else {
            src.broadcast_as((b, h * w, c))?.contiguous()?
        };
        // Output upscaling channels-last: the transformer's image tokens (B, h·w, C) are NHWC.
        let up = src
            .reshape((b, h, w, c))?
            .apply(&self.upscale1)?
            .apply(&self.upscale_ln)?
            .gelu_erf()?
            .apply(&self.upscale2)?
            .gelu_erf()?;
        let (_, uh, uw, uc) = up.dims4()?;
        hyper_in
            .matmul(&up.reshape((b, uh * uw, uc))?.transpose(1, 2)?)?
            .reshape((b, len, uh, uw))
            .map(Some)
    }

    /// Which of the `n` mask tokens the official selection returns: with `multimask_output`,
    /// tokens 1.. (three candidates), otherwise token 0 alone. As `(start, len)`.
    pub fn selected_tokens(&self, multimask_output: bool) -> (usize, usize) {
        if multimask_output {
            (1, self.num_mask_tokens - 1)
        } else {
            (0, 1)
        }
    }

    /// [`Self::forward`] on a prepared image ([`Self::prepare`]).
    pub fn forward_prepared(
        &self,
        image: &PreparedImage,
        sparse: &Tensor,
        multimask_output: bool,
    ) -> Result<(Tensor, Tensor)> {
        let (masks, iou) = self.predict_masks_prepared(image, sparse)?;
        self.select(masks, iou, multimask_output)
    }

    fn select(&self, masks: Tensor, iou: Tensor, multimask: bool) -> Result<(Tensor, Tensor)> {
        let (start, len) = self.selected_tokens(multimask);
        Ok((masks.narrow(1, start, len)?, iou.narrow(1, start, len)?))
    }

    /// The official selection: with `multimask_output`, masks 1.. (three candidates), otherwise
    /// mask 0 alone.
    pub fn forward(
        &self,
        image_embeddings: &Tensor,
        image_pe: &Tensor,
        sparse: &Tensor,
        dense: &Tensor,
        multimask_output: bool,
    ) -> Result<(Tensor, Tensor)> {
        let (masks, iou) = self.predict_masks(image_embeddings, image_pe, sparse, dense)?;
        self.select(masks, iou, multimask_output)
    }
}

/// The tensor [`MaskDecoder::upscale_token_masks`] returns when given no output buffer.
fn tensor_returned(t: Option<Tensor>) -> Result<Tensor> {
    t.ok_or_else(|| candle_core::Error::Msg("mask decoder: upscaled masks not returned".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{pseudo_random, randomise};
    use crate::{PromptEncoder, PromptEncoderConfig};
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    /// One image shared by three prompts (batch-1 image and dense map, prepared once) gives
    /// what the per-prompt copies give (the reference's layout: everything batch 3).
    #[test]
    fn shared_image_equals_per_prompt_copies() -> Result<()> {
        let dev = Device::Cpu;
        let pcfg = PromptEncoderConfig {
            hidden_size: 32,
            image_size: 64,
            ..Default::default()
        };
        let mcfg = MaskDecoderConfig {
            hidden_size: 32,
            mlp_dim: 64,
            iou_head_hidden_dim: 32,
            ..Default::default()
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        PromptEncoder::new(&pcfg, vb.pp("prompt_encoder"))?;
        MaskDecoder::new(&mcfg, vb.pp("mask_decoder"))?;
        randomise(&varmap, 0.3)?;
        // Built again: layers that rearrange their weights at build time (the transposed
        // convolutions, `Linear`) must see the random values.
        let prompts = PromptEncoder::new(&pcfg, vb.pp("prompt_encoder"))?;
        let decoder = MaskDecoder::new(&mcfg, vb.pp("mask_decoder"))?;
        // Five prompts: enough for the factored path of a batch on one image.
        let coords = Tensor::new(
            &[
                [[10f32, 20.]],
                [[40., 5.]],
                [[33., 33.]],
                [[2., 60.]],
                [[50., 50.]],
            ],
            &dev,
        )?;
        let labels = Tensor::new(&[[1f32], [0.], [1.], [1.], [0.]], &dev)?;
        let (sparse, dense) = prompts.forward(Some((&coords, &labels)), None, None)?;
        assert_eq!(dense.dim(0)?, 1);
        let emb = pseudo_random(&[1, 32, 4, 4], 7, 1.0)?;
        let pe = prompts.get_dense_pe()?;
        let prepared = decoder.prepare(&emb, &pe, &dense)?;
        let (masks, iou) = decoder.predict_masks_prepared(&prepared, &sparse)?;
        let wide = |t: &Tensor| t.broadcast_as((5, 32, 4, 4))?.contiguous();
        let (ref_masks, ref_iou) =
            decoder.predict_masks(&wide(&emb)?, &pe, &sparse, &wide(&dense)?)?;
        let max = |a: &Tensor, b: &Tensor| -> Result<f32> {
            assert_eq!(a.dims(), b.dims());
            (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
        };
        let (dm, di) = (max(&masks, &ref_masks)?, max(&iou, &ref_iou)?);
        assert!(dm < 1e-4 && di < 1e-5, "masks {dm}, iou {di}");
        // The prompts differ by far more than the tolerance, so mixing them up (say, prompt 0's
        // answer for all five) would fail the check above.
        let spread = max(&masks.get(0)?, &masks.get(1)?)?;
        assert!(spread > 1e-2, "prompts 0 and 1 differ by {spread} only");

        // Upscaling a subset of the prompts (in any order) gives their rows of the full batch.
        let tokens = decoder.decode_tokens(&prepared, &sparse)?;
        let some = decoder.upscale_masks(&prepared, &tokens, Some(&[2, 0]))?;
        let expect = Tensor::stack(&[masks.get(2)?, masks.get(0)?], 0)?;
        assert_eq!(max(&some, &expect)?, 0.0);
        // The official selection alone: the same values as the narrowed full set.
        for multimask in [true, false] {
            let (start, len) = decoder.selected_tokens(multimask);
            let sel =
                decoder.upscale_selected_masks(&prepared, &tokens, Some(&[2, 0]), multimask)?;
            assert_eq!(
                max(&sel, &expect.narrow(1, start, len)?)?,
                0.0,
                "{multimask}"
            );
            let sel = decoder.upscale_selected_masks(&prepared, &tokens, None, multimask)?;
            assert_eq!(
                max(&sel, &masks.narrow(1, start, len)?)?,
                0.0,
                "{multimask}, all"
            );
        }
        // Into memory reused from a larger call (stale values): the same values and shape.
        let mut buf = vec![f32::NAN; 6 * 3 * 16 * 16];
        for (sel, multimask) in [(&[2usize, 0][..], true), (&[4][..], false), (&[][..], true)] {
            let want = decoder.upscale_selected_masks(&prepared, &tokens, Some(sel), multimask)?;
            let dims = decoder.upscale_selected_masks_into(
                &prepared,
                &tokens,
                Some(sel),
                multimask,
                &mut buf,
            )?;
            assert_eq!([dims.0, dims.1, dims.2, dims.3], want.dims(), "{sel:?}");
            assert_eq!(buf, want.flatten_all()?.to_vec1::<f32>()?, "{sel:?}");
        }
        let none = decoder.upscale_masks(&prepared, &tokens, Some(&[]))?;
        assert_eq!(none.dim(0)?, 0);
        let none = decoder.upscale_selected_masks(&prepared, &tokens, Some(&[]), true)?;
        assert_eq!(none.dims(), [0, 3, 16, 16]);
        assert!(decoder
            .upscale_masks(&prepared, &tokens, Some(&[5]))
            .is_err());

        // The whole decoder without the fused kernels (the layer composition every other
        // device runs) gives the same, prepared and not.
        crate::fused::DISABLED.with(|d| d.set(true));
        let plain = decoder.predict_masks_prepared(&decoder.prepare(&emb, &pe, &dense)?, &sparse);
        let plain_wide = decoder.predict_masks(&wide(&emb)?, &pe, &sparse, &wide(&dense)?);
        crate::fused::DISABLED.with(|d| d.set(false));
        for (name, (m, i)) in [("prepared", plain?), ("per-prompt copies", plain_wide?)] {
            let (dm, di) = (max(&masks, &m)?, max(&iou, &i)?);
            assert!(
                dm < 1e-4 && di < 1e-5,
                "composition, {name}: masks {dm}, iou {di}"
            );
        }
        Ok(())
    }
}
