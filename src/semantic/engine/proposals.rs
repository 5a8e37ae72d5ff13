//! SSA-engine's "class proposal filter" (`scripts/clip.py::clip_classification`): CLIP scores
//! the candidate names on a crop, softmax over the candidates, top-k.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use image::RgbImage;
use segany_clip::{
    l2_normalize, ClipError, ClipModel, ClipTokenizer, TokenizeOptions, CLIP_MEAN, CLIP_STD,
};
use segany_core::image::{resize_u8, Filter};
use segany_core::{Error, Result};

fn clip_err(e: ClipError) -> Error {
    match e {
        ClipError::Candle(c) => Error::Candle(c),
        ClipError::Io { path, source } => Error::io(path, source),
        other => Error::InvalidArgument(other.to_string()),
    }
}

/// transformers' `CLIPImageProcessor` (the Pillow path of transformers 4.27, SSA's pin):
/// short side to `size` bicubic (long side `int(size · long / short)`), centre crop with
/// **floor** offsets `(dim − size) // 2` (torchvision rounds instead, so this differs from
/// `segany_clip::clip_preprocess` by a pixel for some sizes), `x / 255`, CLIP mean/std.
/// Returns `[3, size, size]`.
pub fn clip_processor_pixels(image: &RgbImage, size: usize, device: &Device) -> Result<Tensor> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if w == 0 || h == 0 || size == 0 {
        return Err(Error::InvalidArgument(format!(
            "CLIP preprocessing of a {w}x{h} image to {size}"
        )));
    }
    let (nw, nh) = if w <= h {
        (size, size * h / w)
    } else {
        (size * w / h, size)
    };
    let resized = resize_u8(image.as_raw(), w, h, 3, nw, nh, Filter::Bicubic)
        .ok_or_else(|| Error::InvalidArgument(format!("cannot resize {w}x{h} to {nw}x{nh}")))?;
    let (top, left) = ((nh - size) / 2, (nw - size) / 2);
    let plane = size * size;
    let mut out = vec![0f32; 3 * plane];
    for y in 0..size {
        for x in 0..size {
            let p = ((top + y) * nw + left + x) * 3;
            for c in 0..3 {
                out[c * plane + y * size + x] =
                    (resized[p + c] as f32 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
            }
        }
    }
    Ok(Tensor::from_vec(out, (3, size, size), device)?)
}

/// Indices of the `k` largest probabilities, largest first; equal probabilities keep the
/// lower index first (`torch.topk` leaves tie order unspecified). NaN sorts last.
pub fn top_k(probs: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (probs[a], probs[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
        }
        .then(a.cmp(&b))
    });
    idx.truncate(k);
    idx
}

/// CLIP with a cache of unit text embeddings (candidate names recur across masks).
#[derive(Debug)]
pub struct ClipFilter {
    model: ClipModel,
    tokenizer: ClipTokenizer,
    cache: HashMap<String, Vec<f32>>,
    device: Device,
}

impl ClipFilter {
    /// Wraps a loaded CLIP; inputs are created on `device`.
    pub fn new(model: ClipModel, tokenizer: ClipTokenizer, device: &Device) -> Self {
        Self {
            model,
            tokenizer,
            cache: HashMap::new(),
            device: device.clone(),
        }
    }

    /// The model.
    pub fn model(&self) -> &ClipModel {
        &self.model
    }

    /// `[3, S, S]` CLIP input of a crop (see [`clip_processor_pixels`]).
    pub fn pixels(&self, crop: &RgbImage) -> Result<Tensor> {
        clip_processor_pixels(crop, self.model.config().vision.image_size, &self.device)
    }

    fn text_embeddings(&mut self, names: &[String]) -> Result<Vec<Vec<f32>>> {
        let todo: Vec<&String> = names
            .iter()
            .filter(|n| !self.cache.contains_key(*n))
            .collect();
        if !todo.is_empty() {
            let opts = TokenizeOptions {
                truncate: true,
                allow_empty: false,
            };
            for chunk in todo.chunks(64) {
                let ids = self
                    .tokenizer
                    .tokenize(chunk, opts, &self.device)
                    .map_err(clip_err)?;
                let e = l2_normalize(&self.model.encode_text_embeds(&ids).map_err(clip_err)?)?;
                let rows: Vec<Vec<f32>> = e.to_dtype(candle_core::DType::F32)?.to_vec2()?;
                for (name, row) in chunk.iter().zip(rows) {
                    self.cache.insert((*name).clone(), row);
                }
            }
        }
        Ok(names.iter().map(|n| self.cache[n].clone()).collect())
    }

    /// Softmax over `candidates` of `exp(logit_scale) · cos(image, text)` for one crop, as
    /// `CLIPModel(**CLIPProcessor(text=candidates, images=crop)).logits_per_image.softmax(1)`
    /// (names used as they are: no prompt template).
    pub fn probabilities(&mut self, crop: &RgbImage, candidates: &[String]) -> Result<Vec<f32>> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let px = self.pixels(crop)?.unsqueeze(0)?;
        let img = l2_normalize(&self.model.encode_image(&px).map_err(clip_err)?)?;
        let img: Vec<f32> = img
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        let texts = self.text_embeddings(candidates)?;
        let scale = self.model.logit_scale();
        let logits: Vec<f64> = texts
            .iter()
            .map(|t| {
                scale
                    * t.iter()
                        .zip(&img)
                        .map(|(a, b)| f64::from(*a) * f64::from(*b))
                        .sum::<f64>()
            })
            .collect();
        let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f64 = exp.iter().sum();
        Ok(exp.iter().map(|e| (e / sum) as f32).collect())
    }
}
