//! A cached image embedding, storable as safetensors so an app can encode once and prompt later.

use candle_core::{DType, Device, Tensor};
use segany_core::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

const FORMAT: &str = "segany-sam-image-embedding/1";
const KEY: &str = "image_embedding";

/// The encoder output for one image plus the sizes needed to map prompts and masks.
#[derive(Debug, Clone)]
pub struct ImageEmbedding {
    /// `(1, D, g, g)` features.
    pub features: Tensor,
    /// `(h, w)` of the original image.
    pub original_size: (usize, usize),
    /// `(h, w)` after `ResizeLongestSide` (before padding).
    pub input_size: (usize, usize),
    /// Side of the square encoder input the embedding was computed at.
    pub image_size: usize,
}

fn pair(meta: &HashMap<String, String>, key: &str, path: &Path) -> Result<(usize, usize)> {
    let bad = || Error::Config {
        path: Some(path.to_path_buf()),
        reason: format!("metadata {key:?} missing or not \"h,w\""),
    };
    let v = meta.get(key).ok_or_else(bad)?;
    let (a, b) = v.split_once(',').ok_or_else(bad)?;
    Ok((
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    ))
}

impl ImageEmbedding {
    /// Writes the embedding (as f32) with its sizes in the safetensors metadata.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let t = self
            .features
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?
            .contiguous()?;
        let shape = t.dims().to_vec();
        let data: Vec<f32> = t.flatten_all()?.to_vec1()?;
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &bytes)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let meta: HashMap<String, String> = [
            ("format".to_string(), FORMAT.to_string()),
            (
                "original_size".to_string(),
                format!("{},{}", self.original_size.0, self.original_size.1),
            ),
            (
                "input_size".to_string(),
                format!("{},{}", self.input_size.0, self.input_size.1),
            ),
            ("image_size".to_string(), self.image_size.to_string()),
        ]
        .into();
        safetensors::serialize_to_file([(KEY, view)], Some(meta), path)
            .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
    }

    /// Reads an embedding written by [`ImageEmbedding::save`] onto `device`.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let corrupt = |reason: String| Error::CorruptCheckpoint {
            path: path.to_path_buf(),
            reason,
        };
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(corrupt(format!(
                "not a segany image embedding (metadata format != {FORMAT:?})"
            )));
        }
        let store =
            segany_core::TensorStore::from_bytes(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let features = store
            .get(KEY)
            .ok_or_else(|| Error::MissingTensors(vec![KEY.to_string()]))?;
        let image_size = meta
            .get("image_size")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt("metadata image_size missing".into()))?;
        Ok(Self {
            features: features.to_device(device)?,
            original_size: pair(&meta, "original_size", path)?,
            input_size: pair(&meta, "input_size", path)?,
            image_size,
        })
    }
}
