//! The BLIP captioner of SSA-engine, loaded through [`CheckpointSource`].

use candle_core::{DType, Device, Tensor};
use image::RgbImage;
use segany_blip::{
    blip_preprocess, is_ignored_key, tie_lm_head, BlipCaptioner, BlipConfig, CaptionDecoder,
    GenerationConfig, BLIP_IMAGE_SIZE,
};
use segany_core::checkpoint::CheckedVarBuilder;
use segany_core::{CheckpointSource, Error, Result, TensorStore};

const WEIGHT_FILES: &[&str] = &["model.safetensors"];

/// BLIP + its tokenizer + the decoding settings: image → caption.
#[derive(Debug, Clone)]
pub struct Captioner {
    model: BlipCaptioner,
    decoder: CaptionDecoder,
    generation: GenerationConfig,
    device: Device,
    dtype: DType,
}

impl Captioner {
    /// Loads a captioning checkpoint (`Salesforce/blip-image-captioning-base|large`, a
    /// directory or a `model.safetensors` with `config.json` and `tokenizer.json` beside it)
    /// in `dtype` on `device`. Every missing, mis-shaped or unexpected tensor is reported.
    pub fn load(source: &str, device: &Device, dtype: DType) -> Result<Self> {
        let src = CheckpointSource::parse(source)?;
        let files = src.resolve(WEIGHT_FILES)?;
        let config_path = files.config.ok_or_else(|| Error::Config {
            path: Some(files.weights.clone()),
            reason: "BLIP needs the checkpoint's config.json beside the weights".into(),
        })?;
        let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let cfg = BlipConfig::from_json(&text).map_err(|e| match e {
            Error::Config { reason, .. } => Error::Config {
                path: Some(config_path.clone()),
                reason,
            },
            other => other,
        })?;
        let tok_path = src
            .fetch_optional("tokenizer.json")
            .ok_or_else(|| Error::Config {
                path: Some(files.weights.clone()),
                reason: "BLIP needs tokenizer.json beside the weights".into(),
            })?;
        let bytes = std::fs::read(&tok_path).map_err(|e| Error::io(&tok_path, e))?;
        let decoder = CaptionDecoder::from_bytes(&bytes, &cfg.text_config)?;
        let mut store = TensorStore::load(&files.weights)?;
        tie_lm_head(&mut store, &cfg);
        Self::from_parts(&cfg, store, decoder, device, dtype)
    }

    /// Builds the captioner from a tensor store (checkpoint keys, LM head present).
    pub fn from_parts(
        cfg: &BlipConfig,
        store: TensorStore,
        decoder: CaptionDecoder,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let cvb = CheckedVarBuilder::new(store, dtype, device);
        let built = BlipCaptioner::new(cfg, cvb.var_builder());
        let model = cvb.finish(built, is_ignored_key)?;
        Ok(Self {
            model,
            decoder,
            generation: GenerationConfig::default(),
            device: device.clone(),
            dtype,
        })
    }

    /// Replaces the decoding settings (default: SSA's, greedy with `max_length` 20).
    pub fn with_generation(mut self, generation: GenerationConfig) -> Self {
        self.generation = generation;
        self
    }

    /// The model.
    pub fn model(&mut self) -> &mut BlipCaptioner {
        &mut self.model
    }

    /// BLIP pixels `[1, 3, 384, 384]` of `image` in the model's dtype.
    pub fn pixels(&self, image: &RgbImage) -> Result<Tensor> {
        let (w, h) = (image.width() as usize, image.height() as usize);
        Ok(
            blip_preprocess(image.as_raw(), w, h, BLIP_IMAGE_SIZE, &self.device)?
                .unsqueeze(0)?
                .to_dtype(self.dtype)?,
        )
    }

    /// Caption token ids (`[bos] … [SEP]`) of `image`.
    pub fn caption_ids(&mut self, image: &RgbImage) -> Result<Vec<u32>> {
        let px = self.pixels(image)?;
        self.model.generate(&px, &self.generation)
    }

    /// The caption of `image`, decoded as `processor.decode(ids, skip_special_tokens=True)`.
    pub fn caption(&mut self, image: &RgbImage) -> Result<String> {
        let ids = self.caption_ids(image)?;
        self.decoder.decode(&ids)
    }
}
