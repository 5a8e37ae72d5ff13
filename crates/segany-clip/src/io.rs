//! File glue, kept apart from the model code: finds the weights, config and tokenizer of a
//! local checkpoint (a directory or a single safetensors file) and loads them.
//! Hub ids are not resolved here; the workspace's core crate owns downloading.
//!
//! Recognised files:
//! * transformers: `model.safetensors` + `config.json` (+ `tokenizer.json`);
//! * open_clip: `open_clip_pytorch_model.safetensors` or `open_clip_model.safetensors`
//!   (+ `open_clip_config.json`);
//! * OpenAI / CLIP Surgery: any other single `*.safetensors` (e.g. `CS-ViT-B-16.safetensors`
//!   converted from the `.pt`), geometry inferred from shapes, QuickGELU.
//!
//! Without `tokenizer.json` next to the weights the built-in OpenAI tokenizer is used.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::config::ClipConfig;
use crate::error::{ClipError, Result};
use crate::layout::Layout;
use crate::model::{ClipModel, LoadOptions};
use crate::tokenizer::ClipTokenizer;

const TRANSFORMERS_WEIGHTS: &str = "model.safetensors";
const OPEN_CLIP_WEIGHTS: [&str; 2] = [
    "open_clip_pytorch_model.safetensors",
    "open_clip_model.safetensors",
];

/// The files that make up a local checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFiles {
    /// The safetensors weights.
    pub weights: PathBuf,
    /// Layout implied by the file name (checked against the keys when loading).
    pub layout_hint: Option<Layout>,
    /// `config.json` (transformers) or `open_clip_config.json`, when present.
    pub config: Option<PathBuf>,
    /// `tokenizer.json`, when present.
    pub tokenizer: Option<PathBuf>,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ClipError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn existing(p: PathBuf) -> Option<PathBuf> {
    p.is_file().then_some(p)
}

impl CheckpointFiles {
    /// Finds the files of a checkpoint directory or of a single weights file (its siblings are
    /// searched for configs and `tokenizer.json`).
    pub fn locate(path: &Path) -> Result<Self> {
        let not_found = |what: &str| ClipError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, what.to_string()),
        };
        let (dir, weights) = if path.is_dir() {
            let mut candidates = vec![TRANSFORMERS_WEIGHTS.to_string()];
            candidates.extend(OPEN_CLIP_WEIGHTS.iter().map(|s| s.to_string()));
            let known = candidates
                .iter()
                .map(|n| path.join(n))
                .find(|p| p.is_file());
            let weights = match known {
                Some(p) => p,
                None => {
                    let entries = std::fs::read_dir(path).map_err(|source| ClipError::Io {
                        path: path.to_path_buf(),
                        source,
                    })?;
                    let mut st: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                        .collect();
                    st.sort();
                    match st.len() {
                        1 => st.remove(0),
                        0 => return Err(not_found("no *.safetensors weights in directory")),
                        _ => {
                            return Err(not_found(
                                "several *.safetensors files and none with a known name; \
                                 pass the file itself",
                            ))
                        }
                    }
                }
            };
            (path.to_path_buf(), weights)
        } else if path.is_file() {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            (dir, path.to_path_buf())
        } else {
            return Err(not_found("no such file or directory"));
        };
        let name = weights
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let (layout_hint, config) = if name == TRANSFORMERS_WEIGHTS {
            (
                Some(Layout::Transformers),
                existing(dir.join("config.json")),
            )
        } else if OPEN_CLIP_WEIGHTS.contains(&name.as_str()) {
            (
                Some(Layout::OpenClip),
                existing(dir.join("open_clip_config.json")),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            weights,
            layout_hint,
            config,
            tokenizer: existing(dir.join("tokenizer.json")),
        })
    }

    /// Loads the model (f32 on `device`) and its tokenizer.
    pub fn load(&self, device: &Device) -> Result<(ClipModel, ClipTokenizer)> {
        let config = match (&self.config, self.layout_hint) {
            (Some(p), Some(Layout::Transformers)) => {
                Some(ClipConfig::from_transformers_json(&read(p)?)?)
            }
            (Some(p), Some(Layout::OpenClip)) => Some(ClipConfig::from_open_clip_json(&read(p)?)?),
            _ => None,
        };
        let tokenizer = match &self.tokenizer {
            Some(p) => {
                let bytes = std::fs::read(p).map_err(|source| ClipError::Io {
                    path: p.clone(),
                    source,
                })?;
                ClipTokenizer::from_bytes(&bytes)?
            }
            None => ClipTokenizer::openai()?,
        };
        if !self.weights.is_file() {
            return Err(ClipError::Io {
                path: self.weights.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "weights not found"),
            });
        }
        // SAFETY: the file is memory-mapped read-only; it must not be modified while the
        // model is being built (the tensors are copied into device memory by `load`).
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&self.weights], DType::F32, device)? };
        let layout = match self.layout_hint {
            Some(l) => Some(l),
            None => Some(Layout::detect(&vb)?),
        };
        let model = ClipModel::load(
            vb,
            &LoadOptions {
                layout,
                config: config.clone(),
                activation: None,
            },
        )?;
        let tokenizer = tokenizer.with_context_length(model.config().text.context_length);
        Ok((model, tokenizer))
    }
}
