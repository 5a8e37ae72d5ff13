//! The error type shared by every segany crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading models, images or prompts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying I/O error.
        reason: std::io::Error,
    },
    /// A checkpoint file is not a valid safetensors archive (truncated, corrupt header, ...).
    #[error("{path}: not a valid safetensors file: {reason}")]
    CorruptCheckpoint {
        /// The file at fault.
        path: PathBuf,
        /// What the parser reported.
        reason: String,
    },
    /// Tensors the model needs are absent from the checkpoint.
    #[error("checkpoint is missing {} tensor(s): {}", .0.len(), .0.join(", "))]
    MissingTensors(Vec<String>),
    /// Tensors in the checkpoint that the model does not use.
    #[error("checkpoint has {} unexpected tensor(s): {}", .0.len(), .0.join(", "))]
    UnexpectedTensors(Vec<String>),
    /// Tensors whose stored shape differs from what the configuration asks for.
    #[error("checkpoint has {} mis-shaped tensor(s): {}", .0.len(), .0.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", "))]
    ShapeMismatch(Vec<ShapeMismatch>),
    /// The checkpoint's layout (key naming) could not be recognised.
    #[error("unrecognised checkpoint layout: {0}")]
    UnknownLayout(String),
    /// A configuration file or value is invalid.
    #[error("invalid configuration{}: {reason}", .path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Config {
        /// The file at fault, if any.
        path: Option<PathBuf>,
        /// What is wrong.
        reason: String,
    },
    /// The Hugging Face hub could not provide a file.
    #[error("hub repo {repo} (revision {revision}): cannot get {file}: {reason}")]
    Hub {
        /// Repository id.
        repo: String,
        /// Revision asked for.
        revision: String,
        /// File asked for.
        file: String,
        /// What went wrong.
        reason: String,
    },
    /// An image could not be decoded or encoded.
    #[error("image {path}: {reason}")]
    Image {
        /// The file at fault.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A prompt (points, boxes, masks) is invalid.
    #[error("invalid prompt: {0}")]
    InvalidPrompt(String),
    /// An argument is invalid (device name, dtype, sizes, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A predictor was asked for masks before an image was set.
    #[error("no image set: call set_image (or set_embedding) before predicting")]
    NoImage,
    /// An error from the tensor library.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// A tensor whose stored shape is not the expected one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// Tensor name (as stored in the checkpoint).
    pub key: String,
    /// Shape the model expects.
    pub expected: Vec<usize>,
    /// Shape found in the checkpoint.
    pub found: Vec<usize>,
}

impl std::fmt::Display for ShapeMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (expected {:?}, found {:?})",
            self.key, self.expected, self.found
        )
    }
}

/// Shorthand for results carrying [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            reason: source,
        }
    }
}
