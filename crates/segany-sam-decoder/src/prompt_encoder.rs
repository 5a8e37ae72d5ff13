//! The prompt encoder: points, boxes and low-resolution masks to sparse and dense embeddings.

use crate::config::{PromptEncoderConfig, LAYER_NORM_2D_EPS};
use crate::position::PositionEmbeddingRandom;
use candle_core::{DType, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};
use segany_core::nn::{layer_norm_2d, LayerNorm2d};

/// SAM's `PromptEncoder`.
#[derive(Debug, Clone)]
pub struct PromptEncoder {
    pe_layer: PositionEmbeddingRandom,
    point_embeddings: Vec<Tensor>,
    not_a_point_embed: Tensor,
    no_mask_embed: Tensor,
    conv1: Conv2d,
    ln1: LayerNorm2d,
    conv2: Conv2d,
    ln2: LayerNorm2d,
    conv3: Conv2d,
    cfg: PromptEncoderConfig,
}

impl PromptEncoder {
    /// Loads the encoder from `vb` (usually `vb.pp("prompt_encoder")`).
    pub fn new(cfg: &PromptEncoderConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        let mic = cfg.mask_input_channels;
        let point_embeddings = (0..cfg.num_point_embeddings)
            .map(|i| vb.pp("point_embeddings").pp(i).get((1, d), "weight"))
            .collect::<Result<Vec<_>>>()?;
        let down = vb.pp("mask_downscaling");
        let s2 = Conv2dConfig {
            stride: 2,
            ..Default::default()
        };
        Ok(Self {
            pe_layer: PositionEmbeddingRandom::new(d / 2, vb.pp("pe_layer"))?,
            point_embeddings,
            not_a_point_embed: vb.pp("not_a_point_embed").get((1, d), "weight")?,
            no_mask_embed: vb.pp("no_mask_embed").get((1, d), "weight")?,
            conv1: candle_nn::conv2d(1, mic / 4, 2, s2, down.pp("0"))?,
            ln1: layer_norm_2d(mic / 4, LAYER_NORM_2D_EPS, down.pp("1"))?,
            conv2: candle_nn::conv2d(mic / 4, mic, 2, s2, down.pp("3"))?,
            ln2: layer_norm_2d(mic, LAYER_NORM_2D_EPS, down.pp("4"))?,
            conv3: candle_nn::conv2d(mic, d, 1, Default::default(), down.pp("6"))?,
            cfg: cfg.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PromptEncoderConfig {
        &self.cfg
    }

    /// Dense positional encoding of the image-embedding grid: `(1, D, g, g)`.
    pub fn get_dense_pe(&self) -> Result<Tensor> {
        let g = self.cfg.embedding_size();
        self.pe_layer
            .grid(g, g, self.no_mask_embed.device())?
            .unsqueeze(0)
    }

    /// Embeds points `(B, N, 2)` (pixels of the padded input frame) with labels `(B, N)`
    /// (1 foreground, 0 background, -1 padding; 2 and 3 box corners). With `pad`, a padding
    /// point is appended, as when no box is given.
    pub fn embed_points(&self, coords: &Tensor, labels: &Tensor, pad: bool) -> Result<Tensor> {
        let coords = (coords.to_dtype(DType::F32)? + 0.5)?;
        let labels = labels.to_dtype(DType::F32)?;
        let (coords, labels) = if pad {
            let b = coords.dim(0)?;
            let pc = Tensor::zeros((b, 1, 2), DType::F32, coords.device())?;
            let pl = (Tensor::ones((b, 1), DType::F32, coords.device())? * -1.0)?;
            (
                Tensor::cat(&[&coords, &pc], 1)?,
                Tensor::cat(&[&labels, &pl], 1)?,
            )
        } else {
            (coords, labels)
        };
        let size = self.cfg.image_size;
        let pe = self.pe_layer.encode_pixels(&coords, (size, size))?;
        let dtype = pe.dtype();
        let is = |v: f64| -> Result<Tensor> { labels.eq(v)?.to_dtype(dtype)?.unsqueeze(2) };
        let not_point = is(-1.0)?;
        // Padding points: positional encoding replaced by `not_a_point_embed`.
        let mut out = pe.broadcast_mul(&(1.0 - &not_point)?)?;
        out = out.broadcast_add(&not_point.broadcast_mul(&self.not_a_point_embed)?)?;
        for (label, emb) in self.point_embeddings.iter().enumerate() {
            let m = is(label as f64)?;
            out = out.broadcast_add(&m.broadcast_mul(emb)?)?;
        }
        Ok(out)
    }

    /// Embeds boxes `(B, 4)` given as `x0, y0, x1, y1` pixels: `(B, 2, D)`.
    pub fn embed_boxes(&self, boxes: &Tensor) -> Result<Tensor> {
        let b = boxes.dim(0)?;
        let coords = (boxes.to_dtype(DType::F32)? + 0.5)?.reshape((b, 2, 2))?;
        let size = self.cfg.image_size;
        let pe = self.pe_layer.encode_pixels(&coords, (size, size))?;
        let corners = Tensor::cat(&[&self.point_embeddings[2], &self.point_embeddings[3]], 0)?;
        pe.broadcast_add(&corners.unsqueeze(0)?)
    }

    /// Embeds low-resolution mask logits `(B, 1, 4g, 4g)`: `(B, D, g, g)`.
    pub fn embed_masks(&self, masks: &Tensor) -> Result<Tensor> {
        masks
            .apply(&self.conv1)?
            .apply(&self.ln1)?
            .gelu_erf()?
            .apply(&self.conv2)?
            .apply(&self.ln2)?
            .gelu_erf()?
            .apply(&self.conv3)
    }

    /// Sparse `(B, N, D)` and dense embeddings for any mix of prompts. The dense embedding is
    /// `(B, D, g, g)` with masks and `(1, D, g, g)`, shared by every prompt, without.
    /// `points` is `(coords (B,N,2), labels (B,N))`; `boxes` `(B, 4)`; `masks` `(B, 1, 4g, 4g)`.
    pub fn forward(
        &self,
        points: Option<(&Tensor, &Tensor)>,
        boxes: Option<&Tensor>,
        masks: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let bs = match (points, boxes, masks) {
            (Some((c, _)), _, _) => c.dim(0)?,
            (None, Some(b), _) => b.dim(0)?,
            (None, None, Some(m)) => m.dim(0)?,
            _ => 1,
        };
        let sparse = self.sparse(points, boxes, bs)?;
        let dense = match masks {
            Some(m) => self.embed_masks(&m.to_dtype(self.no_mask_embed.dtype())?)?,
            None => self.no_mask_dense()?,
        };
        Ok((sparse, dense))
    }

    /// The sparse embedding `(B, N, D)` of points and boxes alone (what [`Self::forward`]
    /// returns first).
    pub fn forward_sparse(
        &self,
        points: Option<(&Tensor, &Tensor)>,
        boxes: Option<&Tensor>,
    ) -> Result<Tensor> {
        let bs = match (points, boxes) {
            (Some((c, _)), _) => c.dim(0)?,
            (None, Some(b)) => b.dim(0)?,
            _ => 1,
        };
        self.sparse(points, boxes, bs)
    }

    /// The dense embedding of "no mask input", `(1, D, g, g)`: one map for the whole batch (the
    /// official `expand`s this view over the batch), so the mask decoder can run the image
    /// side of its first block once for all prompts.
    pub fn no_mask_dense(&self) -> Result<Tensor> {
        let d = self.cfg.hidden_size;
        let g = self.cfg.embedding_size();
        self.no_mask_embed
            .reshape((1, d, 1, 1))?
            .broadcast_as((1, d, g, g))?
            .contiguous()
    }

    fn sparse(
        &self,
        points: Option<(&Tensor, &Tensor)>,
        boxes: Option<&Tensor>,
        bs: usize,
    ) -> Result<Tensor> {
        let d = self.cfg.hidden_size;
        let dtype = self.no_mask_embed.dtype();
        let mut parts = Vec::new();
        if let Some((coords, labels)) = points {
            parts.push(self.embed_points(coords, labels, boxes.is_none())?);
        }
        if let Some(b) = boxes {
            parts.push(self.embed_boxes(b)?);
        }
        if parts.is_empty() {
            Tensor::zeros((bs, 0, d), dtype, self.no_mask_embed.device())
        } else {
            Tensor::cat(&parts, 1)?.to_dtype(dtype)
        }
    }
}
