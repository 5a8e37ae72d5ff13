//! Typed errors of the dataset tools.

use std::path::PathBuf;

/// Everything that can go wrong while reading, converting or scoring data.
///
/// Each variant names the file, key or value at fault so a malformed input can
/// be found without a debugger.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file that could not be parsed at all.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser error.
        source: serde_json::Error,
    },
    /// A pickle file that could not be decoded at all.
    #[error("{path}: invalid pickle: {source}")]
    Pickle {
        /// The file.
        path: PathBuf,
        /// The decoder error.
        source: serde_pickle::Error,
    },
    /// A value of the wrong shape or type in a structured file.
    #[error("{context}: {message}")]
    Format {
        /// Where: file and key path, e.g. `refs(unc).p: [3].sentences[0].sent`.
        context: String,
        /// What was wrong.
        message: String,
    },
    /// A compressed RLE string that is not valid.
    #[error("invalid RLE string at byte {position}: {message}")]
    RleString {
        /// Byte offset in the string.
        position: usize,
        /// What was wrong.
        message: String,
    },
    /// An RLE or mask whose sizes do not agree.
    #[error("invalid RLE/mask: {0}")]
    Rle(String),
    /// A polygon that cannot be rasterised (non-finite, too large).
    #[error("invalid polygon: {0}")]
    Polygon(String),
    /// An id referenced but not defined, e.g. a ref's `ann_id` missing from `instances.json`.
    #[error("{kind} id {id} not found{context}")]
    MissingId {
        /// `"annotation"`, `"image"`, `"ref"`, …
        kind: &'static str,
        /// The id.
        id: i64,
        /// Extra context, starting with `" "` when present.
        context: String,
    },
    /// A split name the dataset does not know.
    #[error("unknown split {0:?}")]
    UnknownSplit(String),
    /// An unsupported `.npy` file.
    #[error("{path}: unsupported npy: {message}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// An image that could not be decoded.
    #[error("{path}: {source}")]
    Image {
        /// The file.
        path: PathBuf,
        /// The decoder error.
        source: image::ImageError,
    },
    /// A segmenter failed on a sample.
    #[error("segmenter failed: {0}")]
    Segmenter(String),
}

/// Shorthand result type.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    /// Builds a [`DataError::Format`].
    pub fn format(context: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Format {
            context: context.into(),
            message: message.into(),
        }
    }

    /// Builds a [`DataError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
