//! Caption decoding: BLIP's BERT WordPiece tokenizer (`tokenizer.json`, loaded with the
//! `tokenizers` crate) turning generated ids into text as
//! `processor.decode(ids, skip_special_tokens=True)` does in transformers.

use segany_core::{Error, Result};
use std::collections::HashSet;
use tokenizers::Tokenizer;

use crate::config::BlipTextConfig;

/// Ids → caption text.
#[derive(Debug, Clone)]
pub struct CaptionDecoder {
    tokenizer: Tokenizer,
    special: HashSet<u32>,
}

/// transformers' `clean_up_tokenization` (BERT tokenizers default to applying it).
pub fn clean_up_tokenization(s: &str) -> String {
    s.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

impl CaptionDecoder {
    /// Parses `tokenizer.json` bytes. The ids skipped when decoding are every added token the
    /// file marks special plus the config's `[bos]`, `[SEP]` and `[PAD]` (BLIP's `[DEC]` bos
    /// is special in transformers even where a `tokenizer.json` does not flag it).
    pub fn from_bytes(bytes: &[u8], text: &BlipTextConfig) -> Result<Self> {
        let tokenizer = Tokenizer::from_bytes(bytes).map_err(|e| Error::Config {
            path: None,
            reason: format!("BLIP tokenizer.json: {e}"),
        })?;
        let mut special: HashSet<u32> = tokenizer
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();
        special.extend([text.bos_token_id, text.sep_token_id, text.pad_token_id]);
        Ok(Self { tokenizer, special })
    }

    /// The caption: special tokens dropped, WordPiece pieces joined, spaces cleaned up.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let kept: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|id| !self.special.contains(id))
            .collect();
        let text = self
            .tokenizer
            .decode(&kept, true)
            .map_err(|e| Error::InvalidArgument(format!("cannot decode caption ids: {e}")))?;
        Ok(clean_up_tokenization(&text))
    }
}
