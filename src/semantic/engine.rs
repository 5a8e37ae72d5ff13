//! SSA-engine: open-vocabulary labels for SAM masks (fudan-zvg/Semantic-Segment-Anything,
//! `scripts/pipeline.py::semantic_annotation_pipeline`).
//!
//! Per mask, as SSA-engine:
//! 1. crops of its box at [`EngineConfig::scale_small`] (1.2) and
//!    [`EngineConfig::scale_large`] (1.6) exactly as `mmcv.imcrop(img, [x, y, x+w, y+h],
//!    scale=s)` ([`imcrop_box`]);
//! 2. candidate names: the close-set branches' majority class under the mask (SSA: OneFormer
//!    ADE20K + COCO; here any [`CloseSetBranch`], e.g. the SegFormer
//!    branch's class map), the caller's vocabulary, and — with a [`Captioner`] and
//!    [`EngineConfig::captions`] — the noun phrases ([`segany_blip::noun_phrases()`]) of the BLIP
//!    caption of the large crop;
//! 3. CLIP's class-proposal filter on the small crop ([`ClipFilter`]): softmax over the
//!    candidates of the scaled cosine logits, no prompt template; the top
//!    [`EngineConfig::top_k`] (3) become `class_proposals`.
//!
//! Deliberate differences from SSA-engine, all for determinism or for lack of a model:
//! * candidates are de-duplicated and **sorted by code point** (SSA iterates a Python `set`,
//!   whose order changes from run to run); proposals are ordered by probability, ties to the
//!   earlier candidate; a majority-vote tie takes the lowest class id;
//! * `class_name` is the **top CLIP proposal**: SSA re-ranks the proposals with CLIPSeg on the
//!   1.6 crop (per-pixel argmax, majority inside the mask), and CLIPSeg is not ported;
//! * `class_proposals` is always a list (SSA returns a bare string when one candidate remains,
//!   its issue #28); a mask with no candidate gets `class_name: ""` and no proposals;
//! * images are RGB unless [`EngineConfig::bgr`] asks for SSA's BGR arrays (it reads images with
//!   `mmcv.imread` and feeds BGR to every model);
//! * BLIP runs in the load dtype (SSA: float16 on GPU); the caption settings are transformers'
//!   greedy defaults SSA inherits (`max_length` 20).

mod caption;
mod crop;
mod proposals;

use candle_core::{DType, Device};
use image::RgbImage;
use segany_clip::{ClipModel, ClipTokenizer};
use segany_core::{Error, Result};
use segany_data::mask::Rle;
use serde::Serialize;

use crate::automatic::{AmgConfig, MaskRecord, OutputMode};

pub use caption::Captioner;
pub use crop::{crop_rgb, imcrop_box};
pub use proposals::{clip_processor_pixels, top_k, ClipFilter};

/// Settings of [`SsaEngine`]. [`EngineConfig::base`] (the `Default`) and
/// [`EngineConfig::light`] mirror `scripts/main_ssa_engine.py` without and with `--light_mode`.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// The SAM mask generator's settings (SSA-engine with `--sam`).
    pub amg: AmgConfig,
    /// Crop scale for the CLIP filter (SSA `scale_small` 1.2).
    pub scale_small: f64,
    /// Crop scale for the caption (SSA `scale_large` 1.6).
    pub scale_large: f64,
    /// Number of proposals kept (SSA: 3).
    pub top_k: usize,
    /// Add the caption's noun phrases to the candidates (needs a [`Captioner`]).
    pub captions: bool,
    /// Feed the models BGR pixels, as SSA does (its `mmcv.imread` default).
    pub bgr: bool,
    /// CLIP checkpoint SSA-engine uses in this mode.
    pub clip_model: &'static str,
    /// BLIP checkpoint SSA-engine uses in this mode.
    pub blip_model: &'static str,
}

impl EngineConfig {
    /// SSA-engine's default mode: SAM with 32 points per side, pred IoU 0.86, stability 0.92,
    /// one crop layer off, downscale 2, small regions < 100 px removed, COCO RLE;
    /// `openai/clip-vit-large-patch14`, `Salesforce/blip-image-captioning-large`.
    pub fn base() -> Self {
        Self {
            amg: AmgConfig {
                points_per_side: Some(32),
                pred_iou_thresh: 0.86,
                stability_score_thresh: 0.92,
                crop_n_layers: 0,
                crop_n_points_downscale_factor: 2,
                min_mask_region_area: 100,
                output_mode: OutputMode::CocoRle,
                ..AmgConfig::default()
            },
            scale_small: 1.2,
            scale_large: 1.6,
            top_k: 3,
            captions: true,
            bgr: false,
            clip_model: "openai/clip-vit-large-patch14",
            blip_model: "Salesforce/blip-image-captioning-large",
        }
    }

    /// `--light_mode`: 16 points per side, `openai/clip-vit-base-patch32`,
    /// `Salesforce/blip-image-captioning-base` (the rest as [`Self::base`]).
    pub fn light() -> Self {
        let mut c = Self::base();
        c.amg.points_per_side = Some(16);
        c.clip_model = "openai/clip-vit-base-patch32";
        c.blip_model = "Salesforce/blip-image-captioning-base";
        c
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self::base()
    }
}

/// A close-set semantic branch: a row-major `height × width` class-id map and its names.
#[derive(Debug, Clone, PartialEq)]
pub struct CloseSetBranch {
    /// Class id per pixel.
    pub class_map: Vec<u32>,
    /// Map width.
    pub width: usize,
    /// Map height.
    pub height: usize,
    /// `labels[id]` is the name of class `id`.
    pub labels: Vec<String>,
}

impl CloseSetBranch {
    /// The name of the most frequent class under `mask` (ties: lowest id); `None` for an empty
    /// mask. Errors when the sizes differ or an id has no label.
    pub fn majority_name(&self, mask: &Rle) -> Result<Option<String>> {
        if (mask.height(), mask.width()) != (self.height, self.width)
            || self.class_map.len() != self.width * self.height
        {
            return Err(Error::InvalidArgument(format!(
                "mask is {}x{}, the close-set map {}x{} with {} values",
                mask.height(),
                mask.width(),
                self.height,
                self.width,
                self.class_map.len()
            )));
        }
        let m = mask
            .decode()
            .map_err(|e| Error::InvalidArgument(format!("mask: {e}")))?;
        let mut counts: Vec<u64> = Vec::new();
        for (&px, &c) in m.as_slice().iter().zip(&self.class_map) {
            if px != 0 {
                let c = c as usize;
                if c >= counts.len() {
                    counts.resize(c + 1, 0);
                }
                counts[c] += 1;
            }
        }
        let Some(best) = (0..counts.len())
            .filter(|&c| counts[c] > 0)
            .max_by(|&a, &b| {
                counts[a].cmp(&counts[b]).then(b.cmp(&a)) // lowest id wins ties
            })
        else {
            return Ok(None);
        };
        self.labels.get(best).cloned().map(Some).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "class id {best} has no label ({} labels)",
                self.labels.len()
            ))
        })
    }
}

/// The engine's verdict on one mask.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaskLabel {
    /// The top proposal (`""` when there was no candidate).
    pub class_name: String,
    /// Up to `top_k` names, most probable first.
    pub class_proposals: Vec<String>,
    /// Every candidate, sorted by code point.
    pub candidates: Vec<String>,
    /// CLIP probability of each candidate (same order).
    pub probabilities: Vec<f32>,
    /// The caption of the large crop, when captions are on.
    pub caption: Option<String>,
    /// The small crop's inclusive box `[x1, y1, x2, y2]`.
    pub crop_small: [i64; 4],
}

/// An SSA-engine output record: the SAM record plus `class_name` and `class_proposals`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineRecord {
    /// The SAM (SA-1B) fields.
    #[serde(flatten)]
    pub record: MaskRecord,
    /// The label.
    pub class_name: String,
    /// The proposals.
    pub class_proposals: Vec<String>,
}

/// SSA-engine's `<name>_semantic.json` document: `{"annotations": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineResult {
    /// One record per mask, in the input order.
    pub annotations: Vec<EngineRecord>,
}

fn to_bgr(image: &RgbImage) -> RgbImage {
    let mut out = image.clone();
    for px in out.pixels_mut() {
        px.0.swap(0, 2);
    }
    out
}

/// CLIP (+ optionally BLIP) labelling of SAM masks.
#[derive(Debug)]
pub struct SsaEngine {
    filter: ClipFilter,
    captioner: Option<Captioner>,
    config: EngineConfig,
}

impl SsaEngine {
    /// An engine from loaded models.
    pub fn new(
        clip: ClipModel,
        tokenizer: ClipTokenizer,
        captioner: Option<Captioner>,
        config: EngineConfig,
        device: &Device,
    ) -> Self {
        Self {
            filter: ClipFilter::new(clip, tokenizer, device),
            captioner,
            config,
        }
    }

    /// Loads CLIP (`clip`: hub id, directory or file, any layout `segany_clip` reads) and, if
    /// given, BLIP (`blip`), in f32 on `device`.
    pub fn load(
        clip: &str,
        blip: Option<&str>,
        config: EngineConfig,
        device: &Device,
    ) -> Result<Self> {
        let (model, tokenizer) = crate::referring::load_clip(clip, device)?;
        let captioner = blip
            .map(|b| Captioner::load(b, device, DType::F32))
            .transpose()?;
        Ok(Self::new(model, tokenizer, captioner, config, device))
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The CLIP filter.
    pub fn filter(&mut self) -> &mut ClipFilter {
        &mut self.filter
    }

    /// Labels one mask from its XYWH box; `names` are its close-set names and the vocabulary.
    /// `image` is RGB (turned BGR here when [`EngineConfig::bgr`] is set).
    pub fn label_mask(
        &mut self,
        image: &RgbImage,
        bbox: [f64; 4],
        names: &[String],
    ) -> Result<MaskLabel> {
        if self.config.bgr {
            self.label_inner(&to_bgr(image), bbox, names)
        } else {
            self.label_inner(image, bbox, names)
        }
    }

    fn label_inner(
        &mut self,
        image: &RgbImage,
        bbox: [f64; 4],
        names: &[String],
    ) -> Result<MaskLabel> {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let mut candidates: Vec<String> = names.to_vec();
        let mut caption = None;
        if self.config.captions {
            if let Some(cap) = self.captioner.as_mut() {
                let large = crop_rgb(image, imcrop_box(bbox, self.config.scale_large, w, h))?;
                let text = cap.caption(&large)?;
                candidates.extend(segany_blip::noun_phrases(&text));
                caption = Some(text);
            }
        }
        candidates.retain(|c| !c.trim().is_empty());
        candidates.sort();
        candidates.dedup();
        let crop_small = imcrop_box(bbox, self.config.scale_small, w, h);
        let small = crop_rgb(image, crop_small)?;
        let probabilities = self.filter.probabilities(&small, &candidates)?;
        let class_proposals: Vec<String> = top_k(&probabilities, self.config.top_k)
            .into_iter()
            .map(|i| candidates[i].clone())
            .collect();
        Ok(MaskLabel {
            class_name: class_proposals.first().cloned().unwrap_or_default(),
            class_proposals,
            candidates,
            probabilities,
            caption,
            crop_small,
        })
    }

    /// Labels SAM records (e.g. from [`crate::SamAutomaticMaskGenerator`] with
    /// [`EngineConfig::amg`]): per record the candidates are each branch's majority name,
    /// then `vocabulary`. Returns the labels and SSA-engine's output document.
    pub fn label_records(
        &mut self,
        image: &RgbImage,
        records: &[MaskRecord],
        close_set: &[CloseSetBranch],
        vocabulary: &[String],
    ) -> Result<(Vec<MaskLabel>, EngineResult)> {
        let view = if self.config.bgr {
            to_bgr(image)
        } else {
            image.clone()
        };
        let mut labels = Vec::with_capacity(records.len());
        let mut annotations = Vec::with_capacity(records.len());
        for (i, rec) in records.iter().enumerate() {
            let mut names = Vec::new();
            if !close_set.is_empty() {
                let rle = rec.segmentation.to_rle()?;
                for b in close_set {
                    if let Some(n) = b
                        .majority_name(&rle)
                        .map_err(|e| Error::InvalidArgument(format!("record {i}: {e}")))?
                    {
                        names.push(n);
                    }
                }
            }
            names.extend(vocabulary.iter().cloned());
            let bbox = rec.bbox.map(|v| v as f64);
            let label = self.label_inner(&view, bbox, &names)?;
            annotations.push(EngineRecord {
                record: rec.clone(),
                class_name: label.class_name.clone(),
                class_proposals: label.class_proposals.clone(),
            });
            labels.push(label);
        }
        Ok((labels, EngineResult { annotations }))
    }
}
