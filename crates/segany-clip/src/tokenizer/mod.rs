//! The CLIP BPE tokenizer, matching OpenAI's `clip.tokenize`.
//!
//! Text is cleaned by a port of the Python clean-up ([`clean_text`]), split and BPE-encoded by
//! the `tokenizers` crate from a `tokenizer.json` (the checkpoint's own, or the built-in one
//! generated from `bpe_simple_vocab_16e6.txt.gz` by `tools/fixtures/clip_tokenizer.py`), then
//! framed as `[SOT] + bpe + [EOT]` and zero-padded to the context length.

mod clean;
mod tables;

use candle_core::{Device, Tensor};
use tokenizers::{NormalizerWrapper, PostProcessorWrapper, Tokenizer};

pub use clean::clean_text;

use crate::error::{ClipError, Result};

/// `tokenizer.json` built from OpenAI's `bpe_simple_vocab_16e6.txt.gz`.
pub const OPENAI_TOKENIZER_JSON: &[u8] = include_bytes!("../../assets/tokenizer.json");

/// Start-of-text id in OpenAI's vocabulary.
pub const SOT_ID: u32 = 49406;
/// End-of-text id in OpenAI's vocabulary.
pub const EOT_ID: u32 = 49407;

/// How over-long and empty texts are handled by [`ClipTokenizer::tokenize_ids`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenizeOptions {
    /// Cut texts longer than the context to `context - 1` tokens plus EOT (as
    /// `clip.tokenize(truncate=True)`); when `false` they are a
    /// [`ClipError::ContextOverflow`] (as `truncate=False`, which raises).
    pub truncate: bool,
    /// Accept texts that are empty after clean-up (`clip.tokenize` gives `[SOT, EOT]`); when
    /// `false` they are a [`ClipError::EmptyText`].
    pub allow_empty: bool,
}

/// CLIP's tokenizer.
#[derive(Clone)]
pub struct ClipTokenizer {
    inner: Tokenizer,
    sot: u32,
    eot: u32,
    context_length: usize,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("sot", &self.sot)
            .field("eot", &self.eot)
            .field("context_length", &self.context_length)
            .finish()
    }
}

impl ClipTokenizer {
    /// The built-in OpenAI tokenizer (no file access).
    pub fn openai() -> Result<Self> {
        Self::from_bytes(OPENAI_TOKENIZER_JSON)
    }

    /// Loads a CLIP `tokenizer.json` from bytes. Its normaliser and post-processor are
    /// replaced by the exact Python clean-up and SOT/EOT framing, so a checkpoint's file and
    /// the built-in one give identical ids.
    pub fn from_bytes(json: &[u8]) -> Result<Self> {
        let mut inner =
            Tokenizer::from_bytes(json).map_err(|e| ClipError::Tokenizer(e.to_string()))?;
        inner.with_normalizer(None::<NormalizerWrapper>);
        inner.with_post_processor(None::<PostProcessorWrapper>);
        let id = |tok: &str| {
            inner
                .token_to_id(tok)
                .ok_or_else(|| ClipError::Tokenizer(format!("tokenizer.json has no `{tok}` token")))
        };
        let sot = id("<|startoftext|>")?;
        let eot = id("<|endoftext|>")?;
        Ok(Self {
            inner,
            sot,
            eot,
            context_length: 77,
        })
    }

    /// Sets the context length (77 for every released CLIP).
    pub fn with_context_length(mut self, n: usize) -> Self {
        self.context_length = n.max(2);
        self
    }

    /// Context length.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Start- and end-of-text ids.
    pub fn special_ids(&self) -> (u32, u32) {
        (self.sot, self.eot)
    }

    /// BPE ids of the cleaned text, without SOT/EOT (OpenAI's `SimpleTokenizer.encode`).
    pub fn encode_bpe(&self, text: &str) -> Result<Vec<u32>> {
        let cleaned = clean_text(text).map_err(ClipError::Tokenizer)?;
        if cleaned.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self
            .inner
            .encode(cleaned.as_str(), false)
            .map_err(|e| ClipError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// `[SOT] + bpe + [EOT]`, unpadded and untruncated.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(16);
        ids.push(self.sot);
        ids.extend(self.encode_bpe(text)?);
        ids.push(self.eot);
        Ok(ids)
    }

    /// `clip.tokenize` as id rows of exactly `context_length`, zero-padded.
    pub fn tokenize_ids<S: AsRef<str>>(
        &self,
        texts: &[S],
        opts: TokenizeOptions,
    ) -> Result<Vec<Vec<u32>>> {
        if texts.is_empty() {
            return Err(ClipError::EmptyInput {
                what: "texts".into(),
            });
        }
        let ctx = self.context_length;
        texts
            .iter()
            .enumerate()
            .map(|(index, text)| {
                let mut ids = self.encode(text.as_ref())?;
                if ids.len() == 2 && !opts.allow_empty {
                    return Err(ClipError::EmptyText { index });
                }
                if ids.len() > ctx {
                    if !opts.truncate {
                        return Err(ClipError::ContextOverflow {
                            index,
                            preview: text.as_ref().chars().take(40).collect(),
                            needed: ids.len(),
                            context: ctx,
                        });
                    }
                    ids.truncate(ctx);
                    ids[ctx - 1] = self.eot;
                }
                ids.resize(ctx, 0);
                Ok(ids)
            })
            .collect()
    }

    /// `clip.tokenize` as an `i64` tensor `[T, context_length]`.
    pub fn tokenize<S: AsRef<str>>(
        &self,
        texts: &[S],
        opts: TokenizeOptions,
        device: &Device,
    ) -> Result<Tensor> {
        let rows = self.tokenize_ids(texts, opts)?;
        let n = rows.len();
        let flat: Vec<i64> = rows.into_iter().flatten().map(i64::from).collect();
        Ok(Tensor::from_vec(flat, (n, self.context_length), device)?)
    }
}
