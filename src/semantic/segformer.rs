//! The SSA semantic branch: a SegFormer checkpoint loaded from the hub, a directory or a file,
//! producing a per-pixel class map at the image's size.

use candle_core::{DType, Device, Module, Tensor};
use image::RgbImage;
use segany_core::checkpoint::CheckedVarBuilder;
use segany_core::{CheckpointSource, Error, Result, TensorStore};
use segany_segformer::{class_map, Config, ImageProcessor, SegformerForSemanticSegmentation};
use std::path::Path;

const WEIGHT_FILES: &[&str] = &["model.safetensors"];

/// A SegFormer with its image processor (transformers' `SegformerForSemanticSegmentation` +
/// `SegformerImageProcessor`), as SSA's `scripts/segformer.py` runs it.
///
/// ```no_run
/// use segany::semantic::SemanticSegmenter;
/// # fn main() -> segany::Result<()> {
/// let seg = SemanticSegmenter::load(
///     "nvidia/segformer-b5-finetuned-ade-640-640",
///     &candle_core::Device::Cpu,
///     candle_core::DType::F32,
/// )?;
/// let img = segany::core::image::load_rgb("photo.jpg")?;
/// let classes = seg.segment(&img)?; // h*w class ids, row-major
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SemanticSegmenter {
    model: SegformerForSemanticSegmentation,
    config: Config,
    processor: ImageProcessor,
    device: Device,
    dtype: DType,
}

fn read_json(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

impl SemanticSegmenter {
    /// Loads from a hub repo id (`owner/name[@revision]`), a directory or a `model.safetensors`
    /// file. `config.json` is required (it fixes the sizes and classes);
    /// `preprocessor_config.json` is read when present, else transformers' default processor
    /// (512×512) is used.
    pub fn load(source: &str, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_from(&CheckpointSource::parse(source)?, device, dtype)
    }

    /// [`SemanticSegmenter::load`] from a parsed [`CheckpointSource`].
    pub fn load_from(source: &CheckpointSource, device: &Device, dtype: DType) -> Result<Self> {
        let resolved = source.resolve(WEIGHT_FILES)?;
        let config_path = resolved.config.ok_or_else(|| Error::Config {
            path: Some(resolved.weights.clone()),
            reason: "SegFormer needs the checkpoint's config.json next to its model.safetensors"
                .into(),
        })?;
        let config: Config =
            serde_json::from_str(&read_json(&config_path)?).map_err(|e| Error::Config {
                path: Some(config_path.clone()),
                reason: e.to_string(),
            })?;
        let processor = match source.fetch_optional("preprocessor_config.json") {
            Some(p) => {
                ImageProcessor::from_json(&read_json(&p)?).map_err(|reason| Error::Config {
                    path: Some(p.clone()),
                    reason,
                })?
            }
            None => ImageProcessor::default(),
        };
        let store = TensorStore::load(&resolved.weights)?;
        Self::from_store(store, config, processor, device, dtype)
    }

    /// Builds the model from checkpoint tensors; every missing, mis-shaped or unexpected tensor
    /// is reported by name (BatchNorm's `num_batches_tracked` is ignored).
    pub fn from_store(
        store: TensorStore,
        config: Config,
        processor: ImageProcessor,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        config
            .validate()
            .map_err(|reason| Error::Config { path: None, reason })?;
        let checked = CheckedVarBuilder::new(store, dtype, device);
        let built = SegformerForSemanticSegmentation::new(&config, checked.var_builder());
        let model = checked.finish(built, segany_segformer::is_unused_key)?;
        Ok(Self {
            model,
            config,
            processor,
            device: device.clone(),
            dtype,
        })
    }

    /// The model configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The network.
    pub fn model(&self) -> &SegformerForSemanticSegmentation {
        &self.model
    }

    /// The image processor.
    pub fn processor(&self) -> &ImageProcessor {
        &self.processor
    }

    /// Number of classes.
    pub fn num_labels(&self) -> usize {
        self.model.num_labels()
    }

    /// The model's logits `(1, num_labels, h/4, w/4)` for `img` (RGB).
    pub fn logits(&self, img: &RgbImage) -> Result<Tensor> {
        if img.width() == 0 || img.height() == 0 {
            return Err(Error::InvalidArgument("image has zero size".into()));
        }
        let pixels = self.processor.preprocess(img, &self.device)?;
        let pixels = pixels.to_dtype(self.dtype)?;
        Ok(self.model.forward(&pixels)?)
    }

    /// SSA's class map: logits upsampled to the image size (bilinear, `align_corners=True`),
    /// argmax; `h × w` class ids, row-major.
    pub fn segment(&self, img: &RgbImage) -> Result<Vec<u32>> {
        let logits = self.logits(img)?;
        Ok(class_map(
            &logits,
            img.height() as usize,
            img.width() as usize,
        )?)
    }
}
