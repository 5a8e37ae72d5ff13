//! Referring segmentation with SSP-SAM: a sentence in, the mask of the object it describes out.
//!
//! [`ReferringSegmenter`] holds SAM (any encoder size: the embedding is 256×64×64 for B, L and
//! H; SSP-SAM was trained on ViT-H embeddings), CLIP (run as CLIP Surgery, the `CS-ViT-*`
//! models) and the SSP-SAM head. [`ReferringSegmenter::set_image`] runs both image encoders once;
//! every expression on that image then costs only the CLIP text tower, the head and SAM's mask
//! decoder.
//!
//! Preprocessing follows SSP-SAM's test path: SAM gets the long side resized to 1024 and padded;
//! CLIP gets the long side resized to its canvas (224 or 336, Pillow bilinear) centred on a zero
//! canvas; the text is lower-cased, `"."` is appended and it is tokenized with CLIP's BPE into
//! 77 ids. Empty text is an [`Error::InvalidPrompt`]; text longer than 77 tokens is an
//! [`Error::InvalidPrompt`] too (the official code tokenizes with `truncate=False`, which
//! raises), unless [`ReferringOptions::truncate`] asks for CLIP's truncation (EOT kept last).
//!
//! The head's checkpoint (`--ssp`) is a converted `checkpoint_best_miou.pth`
//! (`tools/convert_ssp_sam.py`): a `.safetensors` file with the official key names, or a
//! directory holding it and optionally `config.json` (a serialized [`SspSamConfig`]). Without a
//! config, the variant is read off the shapes (`vl_pos_embed.weight` rows, `clip_proj` width).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use image::RgbImage;
use segany_clip::io::CheckpointFiles;
use segany_clip::{
    ssp_sam_preprocess, CanvasPlacement, ClipError, ClipModel, ClipTokenizer, TokenizeOptions,
    VisionMode,
};
use segany_core::checkpoint::CheckedVarBuilder;
use segany_core::image::postprocess_masks;
use segany_core::{BinaryMask, CheckpointSource, Error, Result, TensorStore};
use segany_ssp::{is_ignored_key, ClipFeatures, SspSam, SspSamConfig};

use crate::{Sam, SamPredictor};

/// File names tried, in order, inside an SSP-SAM checkpoint directory.
pub const SSP_WEIGHT_FILES: &[&str] = &["model.safetensors", "ssp_sam.safetensors"];
const CLIP_WEIGHT_FILES: &[&str] = &["model.safetensors"];

/// Knobs of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferringOptions {
    /// Truncate expressions longer than the CLIP context (EOT kept last) instead of failing.
    pub truncate: bool,
    /// Dual-path (v-v attention) blocks at the end of the CLIP vision tower (6 for CS-ViT).
    pub surgery_depth: usize,
    /// Expressions run together by [`ReferringSegmenter::segment_all`] (memory grows with it:
    /// each one carries 1 + 128 + P² tokens through the head and 129 prompts through SAM's
    /// decoder).
    pub batch_size: usize,
}

impl Default for ReferringOptions {
    fn default() -> Self {
        Self {
            truncate: false,
            surgery_depth: 6,
            batch_size: 8,
        }
    }
}

/// Wall-clock timings of one expression, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ExpressionTimings {
    /// Tokenizer + CLIP text tower.
    pub text_ms: f64,
    /// SSP-SAM head (adapters, fusion, prompt transformer, box head).
    pub head_ms: f64,
    /// SAM prompt encoder + mask decoder + resizing to the 512 frame and the original size.
    pub decode_ms: f64,
}

/// Wall-clock timings of the per-image work, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ImageTimings {
    /// SAM preprocessing + image encoder.
    pub sam_ms: f64,
    /// CLIP canvas preprocessing + CLIP Surgery vision tower.
    pub clip_ms: f64,
}

/// The answer for one expression.
#[derive(Debug, Clone)]
pub struct ReferringResult {
    /// The expression as given.
    pub text: String,
    /// Mask at the original resolution (SAM's crop-and-resize of the 256² logits, logit > 0).
    pub mask: BinaryMask,
    /// Logits `(512, 512)` in SSP-SAM's padded 512 frame (f32, on the model's device).
    pub logits_512: Tensor,
    /// The box head's raw output: sigmoid `(cx, cy, w, h)` relative to the CLIP canvas.
    pub box_cxcywh: [f32; 4],
    /// The same box in original image pixels, `(x0, y0, x1, y1)` (SSP-SAM's `PostProcess`).
    pub box_xyxy: [f32; 4],
    /// Where the time went.
    pub timings: ExpressionTimings,
}

/// Per-image state: both encoders' outputs.
#[derive(Debug, Clone)]
struct EncodedImage {
    key: u64,
    clip_tokens: Tensor,
    placement: CanvasPlacement,
    original_size: (usize, usize),
    timings: ImageTimings,
}

/// SSP-SAM's text-to-mask pipeline (SAM + CLIP Surgery + the SSP-SAM head).
pub struct ReferringSegmenter {
    predictor: SamPredictor,
    clip: ClipModel,
    tokenizer: ClipTokenizer,
    ssp: SspSam,
    options: ReferringOptions,
    image: Option<EncodedImage>,
}

impl std::fmt::Debug for ReferringSegmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferringSegmenter")
            .field("ssp", self.ssp.config())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Converts a CLIP error into the workspace error: text problems are invalid prompts.
fn clip_error(e: ClipError) -> Error {
    match e {
        ClipError::Candle(c) => Error::Candle(c),
        ClipError::Io { path, source } => Error::io(path, source),
        e @ (ClipError::ContextOverflow { .. } | ClipError::EmptyText { .. }) => {
            Error::InvalidPrompt(e.to_string())
        }
        other => Error::Config {
            path: None,
            reason: format!("CLIP: {other}"),
        },
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// SSP-SAM's text normalisation: lower-case, then the template `"{}."`.
pub fn ssp_sam_text(text: &str) -> String {
    format!("{}.", text.to_lowercase())
}

/// Loads CLIP from a hub repo id (transformers layout), a directory or a `.safetensors` file
/// (transformers, open_clip, or an OpenAI / `CS-ViT-*` state dict), on `device` in f32.
pub fn load_clip(source: &str, device: &Device) -> Result<(ClipModel, ClipTokenizer)> {
    let path: PathBuf = match CheckpointSource::parse(source)? {
        CheckpointSource::File(p) | CheckpointSource::Dir(p) => p,
        hub @ CheckpointSource::Hub { .. } => hub.resolve(CLIP_WEIGHT_FILES)?.weights,
    };
    CheckpointFiles::locate(&path)
        .and_then(|files| files.load(device))
        .map_err(clip_error)
}

/// Infers the SSP-SAM variant from a checkpoint's shapes (`vl_pos_embed.weight`,
/// `clip_proj.weight`).
pub fn infer_ssp_config(store: &TensorStore) -> Result<SspSamConfig> {
    let key = "vl_pos_embed.weight";
    let rows = store
        .shape(key)
        .and_then(|s| s.first().copied())
        .ok_or_else(|| Error::MissingTensors(vec![key.to_string()]))?;
    let mut cfg = [SspSamConfig::vit_b16_224(), SspSamConfig::vit_l14_336()]
        .into_iter()
        .find(|c| c.sequence_len() == rows)
        .ok_or_else(|| Error::Config {
            path: None,
            reason: format!(
                "{key} has {rows} rows; SSP-SAM 224 has 325 and 336 has 705 (1 + 128 + P²)"
            ),
        })?;
    if let Some(&[_, c]) = store.shape("clip_proj.weight") {
        cfg.clip_dim = c;
    }
    Ok(cfg)
}

/// Loads the SSP-SAM head (and SAM's fine-tuned decoder stored with it) from a `.safetensors`
/// file or a directory (see the module docs), on `device` in f32.
pub fn load_ssp(source: &Path, device: &Device) -> Result<SspSam> {
    let resolved = if source.is_dir() {
        CheckpointSource::Dir(source.to_path_buf())
    } else if source.is_file() {
        CheckpointSource::File(source.to_path_buf())
    } else {
        return Err(Error::io(
            source,
            std::io::Error::new(std::io::ErrorKind::NotFound, "SSP-SAM checkpoint not found"),
        ));
    }
    .resolve(SSP_WEIGHT_FILES)?;
    let store = TensorStore::load(&resolved.weights)?;
    // Checkpoints saved from DistributedDataParallel carry a `module.` prefix.
    let store = store.rename(|k| Some(k.strip_prefix("module.").unwrap_or(k).to_string()));
    let config_path = resolved.config.or_else(|| {
        resolved
            .weights
            .parent()
            .map(|d| d.join("config.json"))
            .filter(|p| p.is_file())
    });
    let cfg = match config_path {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
            serde_json::from_str::<SspSamConfig>(&text).map_err(|e| Error::Config {
                path: Some(p.clone()),
                reason: e.to_string(),
            })?
        }
        None => infer_ssp_config(&store)?,
    };
    let checked = CheckedVarBuilder::new(store, DType::F32, device);
    let built = SspSam::new(&cfg, checked.var_builder());
    checked.finish(built, is_ignored_key)
}

impl ReferringSegmenter {
    /// Loads SAM (`sam`: hub id, directory or file, Meta or transformers layout), CLIP (`clip`:
    /// hub id, directory or file) and the SSP-SAM head (`ssp`: directory or file), all f32.
    pub fn load(sam: &str, clip: &str, ssp: &Path, device: &Device) -> Result<Self> {
        let sam = Sam::load(sam, device, DType::F32)?;
        let (clip, tokenizer) = load_clip(clip, device)?;
        let ssp = load_ssp(ssp, device)?;
        Self::from_parts(sam, clip, tokenizer, ssp, ReferringOptions::default())
    }

    /// Assembles the pipeline from loaded parts, checking that they fit together.
    pub fn from_parts(
        sam: Sam,
        clip: ClipModel,
        tokenizer: ClipTokenizer,
        ssp: SspSam,
        options: ReferringOptions,
    ) -> Result<Self> {
        let c = ssp.config();
        let cc = clip.config();
        if cc.vision.image_size != c.image_size
            || cc.vision.patch_size != c.patch_size
            || cc.embed_dim != c.clip_dim
            || cc.text.width != c.clip_dim
            || cc.text.context_length != c.context_length
        {
            return Err(Error::Config {
                path: None,
                reason: format!(
                    "CLIP ({} px, patch {}, embed {}, text width {}, context {}) does not fit the \
                     SSP-SAM head ({} px, patch {}, width {}, context {}): use ViT-B/16 with the \
                     224 head and ViT-L/14@336 with the 336 head",
                    cc.vision.image_size,
                    cc.vision.patch_size,
                    cc.embed_dim,
                    cc.text.width,
                    cc.text.context_length,
                    c.image_size,
                    c.patch_size,
                    c.clip_dim,
                    c.context_length
                ),
            });
        }
        let grid = c.prompt_encoder.embedding_size();
        let scfg = &sam.config().vision_config;
        if scfg.output_channels != c.hidden_dim
            || scfg.grid_size() != grid
            || sam.image_size() != c.prompt_encoder.image_size
        {
            return Err(Error::Config {
                path: None,
                reason: format!(
                    "SAM embeds {} channels on a {}² grid at {} px; the SSP-SAM head expects {} on \
                     {grid}² at {} px",
                    scfg.output_channels,
                    scfg.grid_size(),
                    sam.image_size(),
                    c.hidden_dim,
                    c.prompt_encoder.image_size
                ),
            });
        }
        Ok(Self {
            predictor: SamPredictor::new(sam),
            clip,
            tokenizer,
            ssp,
            options,
            image: None,
        })
    }

    /// The CPU arithmetic of every large product in the pipeline: SAM's image encoder
    /// ([`Sam::set_cpu_matmul`]), both CLIP towers (`ClipModel::set_cpu_matmul`) and the
    /// SSP-SAM head (`SspHead::set_cpu_matmul`); SAM's mask decoder keeps f32. Returns whether
    /// all three now multiply in bf16 (`false` on CPUs without AVX-512 BF16, where nothing
    /// changes). Applies from the next [`ReferringSegmenter::set_image`] /
    /// [`ReferringSegmenter::segment_text`]; an encoded image is kept. The golden tests state
    /// the head's bf16 tolerance; the README's benchmarks give the speed.
    pub fn set_cpu_matmul(&mut self, mode: segany_core::nn::CpuMatmul) -> Result<bool> {
        let sam = self.predictor.set_cpu_matmul(mode)?;
        let clip = self.clip.set_cpu_matmul(mode)?;
        let head = self.ssp.head.set_cpu_matmul(mode)?;
        Ok(sam && clip && head)
    }

    /// Changes the options.
    pub fn set_options(&mut self, options: ReferringOptions) {
        self.options = options;
    }

    /// The SSP-SAM model (head + SAM decoder).
    pub fn ssp(&self) -> &SspSam {
        &self.ssp
    }

    /// The SAM predictor (holds the current image embedding).
    pub fn predictor(&self) -> &SamPredictor {
        &self.predictor
    }

    /// Timings of the current image's encoders, if an image is set.
    pub fn image_timings(&self) -> Option<ImageTimings> {
        self.image.as_ref().map(|i| i.timings)
    }

    fn image_key(img: &RgbImage) -> u64 {
        let mut h = DefaultHasher::new();
        img.dimensions().hash(&mut h);
        img.as_raw().hash(&mut h);
        h.finish()
    }

    /// Runs SAM's image encoder and CLIP Surgery's vision tower on `img` (once per image;
    /// calling it again with identical pixels is free).
    pub fn set_image(&mut self, img: &RgbImage) -> Result<()> {
        let key = Self::image_key(img);
        if self.image.as_ref().is_some_and(|i| i.key == key) {
            return Ok(());
        }
        self.image = None;
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Err(Error::InvalidArgument("image has zero size".into()));
        }
        let t = Instant::now();
        self.predictor.set_image(img)?;
        let sam_ms = ms(t);

        let t = Instant::now();
        let size = self.ssp.config().image_size;
        let device = self.predictor.model().device().clone();
        let rgb =
            segany_clip::RgbImage::new(img.as_raw(), w as usize, h as usize).map_err(clip_error)?;
        let (pixels, placement) = ssp_sam_preprocess(rgb, size, &device).map_err(clip_error)?;
        let mode = VisionMode::Surgery {
            depth: self.options.surgery_depth,
        };
        let clip_tokens = self
            .clip
            .encode_image_tokens(&pixels.unsqueeze(0)?, mode)
            .map_err(clip_error)?;
        let clip_ms = ms(t);
        self.image = Some(EncodedImage {
            key,
            clip_tokens,
            placement,
            original_size: (h as usize, w as usize),
            timings: ImageTimings { sam_ms, clip_ms },
        });
        Ok(())
    }

    /// SSP-SAM's token ids for one expression (lower-cased, `"."` appended, 77 ids).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        if text.trim().is_empty() {
            return Err(Error::InvalidPrompt("the expression is empty".into()));
        }
        let opts = TokenizeOptions {
            truncate: self.options.truncate,
            allow_empty: false,
        };
        let mut rows = self
            .tokenizer
            .tokenize_ids(&[ssp_sam_text(text)], opts)
            .map_err(clip_error)?;
        rows.pop()
            .ok_or_else(|| Error::InvalidPrompt("tokenizer returned nothing".into()))
    }

    /// Segments the object `text` describes in the current image.
    pub fn segment_text(&self, text: &str) -> Result<ReferringResult> {
        self.segment_batch(&[text])?
            .pop()
            .ok_or_else(|| Error::InvalidArgument("no result for the expression".into()))
    }

    /// Segments several expressions on the current image in one batch: the CLIP text tower, the
    /// head and SAM's mask decoder each run once over all of them (the image encoders' outputs
    /// are shared). Results come back in the order of `texts` and equal [`segment_text`] on each
    /// expression (to float rounding). Every expression is checked before any work is done; the
    /// timings of each result are the batch's divided by its size.
    ///
    /// [`segment_text`]: Self::segment_text
    pub fn segment_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<ReferringResult>> {
        let image = self.image.as_ref().ok_or(Error::NoImage)?;
        let emb = self.predictor.embedding().ok_or(Error::NoImage)?;
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let device = self.predictor.model().device().clone();
        let k = texts.len();
        let share = |t: Instant| ms(t) / k as f64;

        let t = Instant::now();
        let mut ids = Vec::with_capacity(k * self.ssp.config().context_length);
        for text in texts {
            ids.extend(self.token_ids(text.as_ref())?);
        }
        let n = ids.len() / k;
        let ids = Tensor::from_vec(ids, (k, n), &device)?;
        let text_features = self.clip.encode_text(&ids).map_err(clip_error)?;
        let text_ms = share(t);

        let t = Instant::now();
        let (_, tokens, width) = image.clip_tokens.dims3()?;
        let image_tokens = image
            .clip_tokens
            .broadcast_as((k, tokens, width))?
            .contiguous()?;
        let clip = ClipFeatures {
            image_tokens: &image_tokens,
            text_embedding: &text_features.embeds,
            word_features: &text_features.tokens,
            token_ids: &ids,
        };
        let head = self.ssp.head.forward(&clip)?;
        let boxes: Vec<f32> = head.boxes.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let head_ms = share(t);

        let t = Instant::now();
        let (low_res, logits_512) = self.ssp.decode(&head.prompts, &emb.features)?;
        let (oh, ow) = emb.original_size;
        let full = postprocess_masks(
            &low_res.to_dtype(DType::F32)?,
            emb.image_size,
            emb.input_size,
            emb.original_size,
        )?;
        let logits_512 = logits_512.squeeze(1)?.to_dtype(DType::F32)?;
        let mut masks = Vec::with_capacity(k);
        for i in 0..k {
            let values: Vec<f32> = full.get(i)?.flatten_all()?.to_vec1()?;
            masks.push(BinaryMask::from_logits(oh, ow, &values, 0.0)?);
        }
        let decode_ms = share(t);

        let timings = ExpressionTimings {
            text_ms,
            head_ms,
            decode_ms,
        };
        texts
            .iter()
            .zip(masks)
            .enumerate()
            .map(|(i, (text, mask))| {
                let b = [
                    boxes[4 * i],
                    boxes[4 * i + 1],
                    boxes[4 * i + 2],
                    boxes[4 * i + 3],
                ];
                Ok(ReferringResult {
                    text: text.as_ref().to_string(),
                    mask,
                    logits_512: logits_512.get(i)?,
                    box_cxcywh: b,
                    box_xyxy: canvas_box_to_image(
                        b,
                        self.ssp.config().image_size,
                        &image.placement,
                        image.original_size,
                    ),
                    timings,
                })
            })
            .collect()
    }

    /// Sets the image (if it changed) and segments every expression, in batches of
    /// [`ReferringOptions::batch_size`].
    pub fn segment_all<S: AsRef<str>>(
        &mut self,
        img: &RgbImage,
        texts: &[S],
    ) -> Result<Vec<ReferringResult>> {
        self.set_image(img)?;
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.options.batch_size.max(1)) {
            out.extend(self.segment_batch(chunk)?);
        }
        Ok(out)
    }
}

/// SSP-SAM's `PostProcess` of the auxiliary box: `(cx, cy, w, h)` relative to the `size`² CLIP
/// canvas → `(x0, y0, x1, y1)` in original pixels (minus the canvas offset, clamped at 0,
/// divided by the resize ratio, clipped to the image).
pub fn canvas_box_to_image(
    b: [f32; 4],
    size: usize,
    placement: &CanvasPlacement,
    original_size: (usize, usize),
) -> [f32; 4] {
    let s = size as f64;
    let [cx, cy, w, h] = b.map(f64::from);
    let (oh, ow) = (original_size.0 as f64, original_size.1 as f64);
    let x = |v: f64| ((v * s - placement.left as f64).max(0.0) / placement.ratio).min(ow);
    let y = |v: f64| ((v * s - placement.top as f64).max(0.0) / placement.ratio).min(oh);
    [
        x(cx - w / 2.0) as f32,
        y(cy - h / 2.0) as f32,
        x(cx + w / 2.0) as f32,
        y(cy + h / 2.0) as f32,
    ]
}

impl segany_data::eval::ReferringSegmenter for ReferringSegmenter {
    fn name(&self) -> String {
        format!("ssp-sam-{}", self.ssp.config().image_size)
    }

    fn segment(
        &mut self,
        input: &segany_data::eval::SegmenterInput<'_>,
    ) -> segany_data::Result<segany_data::eval::Prediction> {
        let err = |e: Error| segany_data::DataError::Segmenter(e.to_string());
        self.set_image(input.image).map_err(err)?;
        let r = self.segment_text(input.sentence).map_err(err)?;
        let mask = segany_data::mask::Mask::from_vec(
            r.mask.height(),
            r.mask.width(),
            r.mask.data().to_vec(),
        )?;
        // SSP-SAM scores its own 512² logits (> 0) in the padded frame.
        let frame: Vec<u8> = r
            .logits_512
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| err(e.into()))?
            .into_iter()
            .map(|v| u8::from(v > 0.0))
            .collect();
        let side = segany_data::metrics::SSP_SAM_FRAME;
        let frame_mask = segany_data::mask::Mask::from_vec(side, side, frame)?;
        Ok(segany_data::eval::Prediction {
            mask,
            no_target: false,
            frame_mask: Some(frame_mask),
        })
    }
}
