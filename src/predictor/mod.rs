//! `SamPredictor`: encode an image once, then prompt it many times (segment-anything's
//! `SamPredictor`, with batched prompts).

mod embedding;
mod prompt;

pub use embedding::ImageEmbedding;
pub use prompt::{Point, PointLabel, Prompt};

use crate::Sam;
use candle_core::{DType, Tensor};
use image::RgbImage;
use rayon::prelude::*;
use segany_core::image::{postprocess_masks, ResizeLongestSide};
use segany_core::nn::with_f32_values;
use segany_core::{BinaryMask, Error, Result};
use segany_sam_decoder::PreparedImage;

/// Masks for one prompt.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Binary masks at the original image size (3 with multimask output, else 1).
    pub masks: Vec<BinaryMask>,
    /// The model's IoU prediction for each mask.
    pub scores: Vec<f32>,
    /// Low-resolution logits `(K, 256, 256)` (f32); an entry can be fed back as `mask_input`.
    pub low_res_logits: Tensor,
}

impl Prediction {
    /// Index of the highest-scoring mask.
    pub fn best(&self) -> usize {
        self.scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap_or(0)
    }
}

/// Encodes an image once and predicts masks for prompts on it.
#[derive(Debug, Clone)]
pub struct SamPredictor {
    sam: Sam,
    transform: ResizeLongestSide,
    embedding: Option<ImageEmbedding>,
    /// The decoder's prompt-independent work on the embedding, done once per image.
    prepared: Option<PreparedImage>,
}

impl SamPredictor {
    /// A predictor over `sam`.
    pub fn new(sam: Sam) -> Self {
        let transform = ResizeLongestSide::new(sam.image_size());
        Self {
            sam,
            transform,
            embedding: None,
            prepared: None,
        }
    }

    /// The model.
    pub fn model(&self) -> &Sam {
        &self.sam
    }

    /// The image encoder's CPU arithmetic ([`Sam::set_cpu_matmul`]) for the next
    /// [`SamPredictor::set_image`]; a cached embedding is kept. Whether bf16 is on.
    pub fn set_cpu_matmul(&mut self, mode: segany_core::nn::CpuMatmul) -> Result<bool> {
        self.sam.set_cpu_matmul(mode)
    }

    /// Resizes, normalises and encodes `img`, caching the embedding.
    pub fn set_image(&mut self, img: &RgbImage) -> Result<()> {
        if img.width() == 0 || img.height() == 0 {
            return Err(Error::InvalidArgument("image has zero size".into()));
        }
        let (pixels, input_size) = self.transform.preprocess(img, self.sam.device())?;
        let features = self.sam.encode(&pixels)?;
        self.prepared = Some(self.sam.prepare_decoder(&features)?);
        self.embedding = Some(ImageEmbedding {
            features,
            original_size: (img.height() as usize, img.width() as usize),
            input_size,
            image_size: self.sam.image_size(),
        });
        Ok(())
    }

    /// Uses a previously computed embedding (e.g. from [`ImageEmbedding::load`]).
    pub fn set_embedding(&mut self, embedding: ImageEmbedding) -> Result<()> {
        let cfg = &self.sam.config().vision_config;
        let expect = [1, cfg.output_channels, cfg.grid_size(), cfg.grid_size()];
        if embedding.features.dims() != expect || embedding.image_size != self.sam.image_size() {
            return Err(Error::InvalidArgument(format!(
                "embedding {:?} at input size {} does not fit this model ({expect:?} at {})",
                embedding.features.dims(),
                embedding.image_size,
                self.sam.image_size()
            )));
        }
        let features = embedding.features.to_device(self.sam.device())?;
        self.prepared = Some(self.sam.prepare_decoder(&features)?);
        self.embedding = Some(ImageEmbedding {
            features,
            ..embedding
        });
        Ok(())
    }

    /// The cached embedding, if an image is set.
    pub fn embedding(&self) -> Option<&ImageEmbedding> {
        self.embedding.as_ref()
    }

    /// The decoder's prompt-independent work on the current image ([`Sam::prepare_decoder`]).
    pub(crate) fn prepared(&self) -> Option<&PreparedImage> {
        self.prepared.as_ref()
    }

    /// Forgets the current image.
    pub fn reset_image(&mut self) {
        self.embedding = None;
        self.prepared = None;
    }

    /// Predicts masks for one prompt. With `multimask`, three candidate masks (decoder tokens
    /// 1..3); otherwise one (token 0), exactly as the reference selects them.
    pub fn predict(&self, prompt: &Prompt, multimask: bool) -> Result<Prediction> {
        let mut out = self.predict_batch(std::slice::from_ref(prompt), multimask)?;
        out.pop()
            .ok_or_else(|| Error::InvalidPrompt("no prediction for the prompt".into()))
    }

    /// Predicts masks for N prompts in one decoder pass. All prompts must have the same shape:
    /// the same number of points, all or none with a box, all or none with a mask input
    /// (e.g. N boxes, or N point sets).
    pub fn predict_batch(&self, prompts: &[Prompt], multimask: bool) -> Result<Vec<Prediction>> {
        let (low, iou, full) = self.predict_logits_batch(prompts, multimask)?;
        let (h, w) = self.embedding.as_ref().ok_or(Error::NoImage)?.original_size;
        let scores: Vec<Vec<f32>> = iou.to_vec2()?;
        let k = full.dim(1)?;
        // Binarised straight from the logits' buffer, the masks in parallel.
        let masks: Vec<BinaryMask> = with_f32_values(&full, |v| {
            v.par_chunks((h * w).max(1))
                .map(|logits| BinaryMask::from_logits(h, w, logits, 0.0))
                .collect::<Result<Vec<_>>>()
        })?;
        let mut masks = masks.into_iter();
        let mut preds = Vec::with_capacity(prompts.len());
        for (i, s) in scores.into_iter().enumerate() {
            preds.push(Prediction {
                masks: masks.by_ref().take(k).collect(),
                scores: s,
                low_res_logits: low.get(i)?,
            });
        }
        Ok(preds)
    }

    /// Like [`SamPredictor::predict_batch`] but returns raw tensors:
    /// `(low_res_logits (N, K, 4g, 4g), iou (N, K), logits at original size (N, K, H, W))`.
    pub fn predict_logits_batch(
        &self,
        prompts: &[Prompt],
        multimask: bool,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let emb = self.embedding.as_ref().ok_or(Error::NoImage)?;
        let (coords, labels, boxes, masks) = self.prompt_tensors(prompts, emb)?;
        let points = match (&coords, &labels) {
            (Some(c), Some(l)) => Some((c, l)),
            _ => None,
        };
        let (low, iou) = match (&self.prepared, &masks) {
            (Some(prepared), None) => {
                self.sam
                    .decode_prepared(prepared, points, boxes.as_ref(), multimask)?
            }
            _ => self.sam.decode(
                &emb.features,
                points,
                boxes.as_ref(),
                masks.as_ref(),
                multimask,
            )?,
        };
        let full = postprocess_masks(
            &low,
            self.sam.image_size(),
            emb.input_size,
            emb.original_size,
        )?;
        Ok((low, iou, full))
    }

    #[allow(clippy::type_complexity)]
    fn prompt_tensors(
        &self,
        prompts: &[Prompt],
        emb: &ImageEmbedding,
    ) -> Result<(
        Option<Tensor>,
        Option<Tensor>,
        Option<Tensor>,
        Option<Tensor>,
    )> {
        let first = prompts
            .first()
            .ok_or_else(|| Error::InvalidPrompt("no prompt given".into()))?;
        let n_points = first.points.len();
        let has_box = first.bbox.is_some();
        let has_mask = first.mask_input.is_some();
        let (h, w) = emb.original_size;
        let dev = self.sam.device();
        let mut xy = Vec::new();
        let mut lab = Vec::new();
        let mut bx = Vec::new();
        let mut mk = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            if p.is_empty() {
                return Err(Error::InvalidPrompt(format!(
                    "prompt {i} is empty: give points, a box or a mask"
                )));
            }
            if p.points.len() != n_points
                || p.bbox.is_some() != has_box
                || p.mask_input.is_some() != has_mask
            {
                return Err(Error::InvalidPrompt(format!(
                    "prompt {i} differs in shape from prompt 0 (points, box and mask presence must match in a batch)"
                )));
            }
            for pt in &p.points {
                if !pt.x.is_finite() || !pt.y.is_finite() {
                    return Err(Error::InvalidPrompt(format!(
                        "point ({}, {}) is not finite",
                        pt.x, pt.y
                    )));
                }
                if pt.x < 0.0 || pt.y < 0.0 || pt.x > w as f32 || pt.y > h as f32 {
                    return Err(Error::InvalidPrompt(format!(
                        "point ({}, {}) lies outside the {w}x{h} image",
                        pt.x, pt.y
                    )));
                }
                let [x, y] = self.transform.apply_coords([pt.x, pt.y], (h, w));
                xy.extend([x, y]);
                lab.push(pt.label.value());
            }
            if let Some(b) = p.bbox {
                if b.iter().any(|v| !v.is_finite()) || b[2] < b[0] || b[3] < b[1] {
                    return Err(Error::InvalidPrompt(format!(
                        "box {b:?} must be finite with x0 <= x1 and y0 <= y1"
                    )));
                }
                bx.extend(self.transform.apply_box(b, (h, w)));
            }
            if let Some(m) = &p.mask_input {
                let s = self.sam.mask_input_size();
                let m = m.to_dtype(DType::F32)?;
                let m = match m.dims() {
                    [a, b] if *a == s && *b == s => m.unsqueeze(0)?,
                    [1, a, b] if *a == s && *b == s => m,
                    d => {
                        return Err(Error::InvalidPrompt(format!(
                            "mask input must be (1, {s}, {s}), got {d:?}"
                        )))
                    }
                };
                mk.push(m.to_device(dev)?);
            }
        }
        let b = prompts.len();
        let coords = (n_points > 0)
            .then(|| Tensor::from_vec(xy, (b, n_points, 2), dev))
            .transpose()?;
        let labels = (n_points > 0)
            .then(|| Tensor::from_vec(lab, (b, n_points), dev))
            .transpose()?;
        let boxes = has_box
            .then(|| Tensor::from_vec(bx, (b, 4), dev))
            .transpose()?;
        let masks = has_mask.then(|| Tensor::stack(&mk, 0)).transpose()?;
        Ok((coords, labels, boxes, masks))
    }
}
