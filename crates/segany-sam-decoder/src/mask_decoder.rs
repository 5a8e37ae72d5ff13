//! The mask decoder: output tokens + prompt tokens through the two-way transformer, upscaled
//! image features, hypernetwork MLPs and the IoU head.

use crate::config::{MaskDecoderConfig, LAYER_NORM_2D_EPS};
use crate::mlp::Mlp;
use crate::transformer::TwoWayTransformer;
use crate::upscale::ConvTranspose2x2;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::{layer_norm, LayerNorm};

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
        let b = sparse.dim(0)?;
        let output_tokens = Tensor::cat(&[&self.iou_token, &self.mask_tokens], 0)?;
        let (nt, d) = output_tokens.dims2()?;
        let output_tokens = output_tokens.unsqueeze(0)?.broadcast_as((b, nt, d))?;
        let tokens = Tensor::cat(
            &[&output_tokens, &sparse.to_dtype(output_tokens.dtype())?],
            1,
        )?;
        let (_, c, h, w) = dense.dims4()?;
        // One image and one dense map for all prompts (no mask inputs): the transformer gets
        // batch 1 on the image side and projects it once in its first block.
        let src = if image_embeddings.dim(0)? == 1 && dense.dim(0)? == 1 {
            image_embeddings.broadcast_add(dense)?
        } else {
            image_embeddings
                .broadcast_as((b, c, h, w))?
                .broadcast_add(dense)?
        };
        let pos_src = image_pe.broadcast_as((1, c, h, w))?.contiguous()?;
        let (hs, src) = self.transformer.forward(&src, &pos_src, &tokens)?;
        let src = if src.dim(0)? == b {
            src
        } else {
            src.broadcast_as((b, h * w, c))?.contiguous()?
        };
        let iou_token_out = hs.narrow(1, 0, 1)?.squeeze(1)?;
        // Output upscaling channels-last: the transformer's image tokens (B, h·w, C) are NHWC.
        let up = src
            .reshape((b, h, w, c))?
            .apply(&self.upscale1)?
            .apply(&self.upscale_ln)?
            .gelu_erf()?
            .apply(&self.upscale2)?
            .gelu_erf()?;
        let hyper_in = self
            .hypernetworks
            .iter()
            .enumerate()
            .map(|(i, mlp)| mlp.forward(&hs.narrow(1, 1 + i, 1)?.squeeze(1)?))
            .collect::<Result<Vec<_>>>()?;
        let hyper_in = Tensor::stack(&hyper_in, 1)?;
        let (_, uh, uw, uc) = up.dims4()?;
        let masks = hyper_in
            .matmul(&up.reshape((b, uh * uw, uc))?.transpose(1, 2)?)?
            .reshape((b, self.num_mask_tokens, uh, uw))?;
        let iou = self.iou_head.forward(&iou_token_out)?;
        Ok((masks, iou))
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
        let (start, len) = if multimask_output {
            (1, self.num_mask_tokens - 1)
        } else {
            (0, 1)
        };
        Ok((masks.narrow(1, start, len)?, iou.narrow(1, start, len)?))
    }
}
