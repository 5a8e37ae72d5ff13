//! Typed errors of the CLIP crate.

use crate::layout::Layout;

/// Everything that can go wrong while configuring, loading or running CLIP.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// None of the probe keys of any known layout is present in the checkpoint.
    #[error("unknown CLIP checkpoint layout: none of the probe keys {probed:?} is present")]
    UnknownLayout {
        /// The keys that were looked for.
        probed: Vec<String>,
    },
    /// A tensor the model needs is absent from the checkpoint.
    #[error("missing key `{key}` in {layout} checkpoint (needed for canonical `{canonical}`)")]
    MissingKey {
        /// Layout the checkpoint was read with.
        layout: Layout,
        /// Name looked up in the checkpoint.
        key: String,
        /// Canonical (OpenAI) name of the parameter.
        canonical: String,
    },
    /// A tensor has a shape that does not fit the configuration.
    #[error("tensor `{key}` (canonical name) has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Canonical name of the parameter.
        key: String,
        /// Shape required by the configuration.
        expected: Vec<usize>,
        /// Shape found in the checkpoint.
        actual: Vec<usize>,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid CLIP config: {field} = {value}: {reason}")]
    InvalidConfig {
        /// Field name (config.json spelling where there is one).
        field: String,
        /// Offending value.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A config file could not be parsed.
    #[error("cannot parse {what}: {source}")]
    ConfigParse {
        /// Which document (e.g. `config.json`).
        what: String,
        /// Parser error.
        #[source]
        source: serde_json::Error,
    },
    /// A text needs more tokens than the context holds (and truncation is off).
    #[error("text #{index} ({preview:?}) needs {needed} tokens, the context holds {context}")]
    ContextOverflow {
        /// Position of the text in the batch.
        index: usize,
        /// First characters of the text.
        preview: String,
        /// Tokens needed, SOT and EOT included.
        needed: usize,
        /// Context length of the model.
        context: usize,
    },
    /// A text is empty (or only whitespace) after clean-up.
    #[error("text #{index} is empty after clean-up")]
    EmptyText {
        /// Position of the text in the batch.
        index: usize,
    },
    /// A batch argument is empty.
    #[error("empty input: {what}")]
    EmptyInput {
        /// What was empty (e.g. `texts`, `labels`).
        what: String,
    },
    /// An image tensor does not have the shape the vision tower expects.
    #[error("pixel tensor has shape {actual:?}, the vision tower expects [B, 3, {size}, {size}]")]
    ImageShape {
        /// Shape given.
        actual: Vec<usize>,
        /// Expected side length.
        size: usize,
    },
    /// Token ids have a wrong shape or values out of the vocabulary.
    #[error("token ids: {reason}")]
    TokenIds {
        /// What is wrong.
        reason: String,
    },
    /// The `tokenizers` crate reported an error.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A file could not be read (only in [`crate::io`]).
    #[error("cannot read {path}: {source}")]
    Io {
        /// Path at fault.
        path: std::path::PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ClipError>;
