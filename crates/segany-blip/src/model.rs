//! `BlipForConditionalGeneration` for captioning: candle-transformers' BLIP towers
//! (`models::blip`, whose layers match transformers' module for module) plus the checkpoint
//! glue and the decoding loop of transformers' `BlipForConditionalGeneration.generate`.
//!
//! What this crate adds to candle-transformers, and why:
//! * **Tied LM head.** transformers ties `text_decoder.cls.predictions.decoder.weight` to the
//!   word embeddings and `save_pretrained` stores only the latter; candle reads the former.
//!   [`tie_lm_head`] fills it in from the embeddings when the config ties them.
//! * **Config defaults.** candle's `blip::Config` needs every field; [`crate::BlipConfig`]
//!   uses transformers' defaults for absent ones and knows the special token ids.
//! * **Generation.** candle has no `generate`; [`BlipCaptioner::generate`] is transformers'
//!   greedy search as SSA calls it (prompt `[bos]`, stop on `[SEP]`, `max_length` counting
//!   the prompt, first maximal logit on ties, as `torch.argmax`).

use candle_core::{IndexOp, Module, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::blip;
use segany_core::{Error, Result, TensorStore};

use crate::config::BlipConfig;

/// Checkpoint key of the LM head's output matrix.
pub const LM_HEAD_KEY: &str = "text_decoder.cls.predictions.decoder.weight";
/// Checkpoint key of the word embeddings it may be tied to.
pub const WORD_EMBEDDINGS_KEY: &str = "text_decoder.bert.embeddings.word_embeddings.weight";

/// Adds [`LM_HEAD_KEY`] as a copy of [`WORD_EMBEDDINGS_KEY`] when the config ties them and the
/// checkpoint lacks it (transformers' `save_pretrained` drops tied copies).
pub fn tie_lm_head(store: &mut TensorStore, cfg: &BlipConfig) {
    if cfg.ties_word_embeddings() && !store.contains(LM_HEAD_KEY) {
        if let Some(t) = store.get(WORD_EMBEDDINGS_KEY).cloned() {
            store.insert(LM_HEAD_KEY, t);
        }
    }
}

/// Checkpoint tensors the captioner legitimately does not use: position-id buffers written by
/// older transformers and the LM head bias alias `decoder.bias` (= `predictions.bias`).
pub fn is_ignored_key(name: &str) -> bool {
    name.ends_with("position_ids") || name == "text_decoder.cls.predictions.decoder.bias"
}

/// Decoding settings of `generate`; `Default` is what SSA-engine gets (transformers 4.27's
/// generation defaults): greedy, at most 20 tokens including the `[bos]` prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerationConfig {
    /// Maximum caption length in tokens, prompt included.
    pub max_length: usize,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self { max_length: 20 }
    }
}

/// BLIP captioning model.
#[derive(Debug, Clone)]
pub struct BlipCaptioner {
    inner: blip::BlipForConditionalGeneration,
    config: BlipConfig,
}

fn argmax_first(v: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in v.iter().enumerate() {
        if x.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i)
}

impl BlipCaptioner {
    /// Builds the model; `vb` holds the checkpoint's own keys (`vision_model.*`,
    /// `text_decoder.*`), with the LM head present (see [`tie_lm_head`]).
    pub fn new(cfg: &BlipConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let inner = blip::BlipForConditionalGeneration::new(&cfg.to_candle(), vb)?;
        Ok(Self {
            inner,
            config: cfg.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BlipConfig {
        &self.config
    }

    /// Image tokens `[B, 1 + N, D]` (the vision model's last hidden state after
    /// `post_layernorm`, `vision_outputs[0]` in transformers) for pixels `[B, 3, S, S]`.
    pub fn image_embeds(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let s = self.config.vision_config.image_size;
        match pixel_values.dims() {
            [_, 3, h, w] if *h == s && *w == s => {}
            d => {
                return Err(Error::InvalidArgument(format!(
                    "BLIP pixels must be [B, 3, {s}, {s}], got {d:?}"
                )))
            }
        }
        Ok(self.inner.vision_model().forward(pixel_values)?)
    }

    /// Decoder logits `[B, T, V]` for `input_ids` `[B, T]` attending to `image_embeds`,
    /// continuing the key/value cache of earlier calls (see [`Self::reset`]).
    pub fn decoder_logits(&mut self, input_ids: &Tensor, image_embeds: &Tensor) -> Result<Tensor> {
        Ok(self.inner.text_decoder().forward(input_ids, image_embeds)?)
    }

    /// Clears the decoder's key/value cache.
    pub fn reset(&mut self) {
        self.inner.reset_kv_cache();
    }

    /// Greedy caption token ids for one image `[1, 3, S, S]`, starting with `[bos]` and
    /// ending with `[SEP]` unless `max_length` was reached first (the ids transformers'
    /// `generate` returns).
    pub fn generate(&mut self, pixel_values: &Tensor, gen: &GenerationConfig) -> Result<Vec<u32>> {
        if pixel_values.dim(0)? != 1 {
            return Err(Error::InvalidArgument(format!(
                "generate takes one image, got a batch of {}",
                pixel_values.dim(0)?
            )));
        }
        let embeds = self.image_embeds(pixel_values)?;
        self.generate_from_embeds(&embeds, gen)
    }

    /// [`Self::generate`] from precomputed image tokens `[1, 1 + N, D]`.
    pub fn generate_from_embeds(
        &mut self,
        image_embeds: &Tensor,
        gen: &GenerationConfig,
    ) -> Result<Vec<u32>> {
        let t = &self.config.text_config;
        let (bos, sep) = (t.bos_token_id, t.sep_token_id);
        let limit = gen.max_length.min(t.max_position_embeddings);
        let device = image_embeds.device().clone();
        self.reset();
        let mut ids = vec![bos];
        while ids.len() < limit {
            let last = ids[ids.len() - 1];
            let input = Tensor::new(&[[last]], &device)?;
            let logits = self.decoder_logits(&input, image_embeds)?;
            let row: Vec<f32> = logits
                .i((0, 0))?
                .to_dtype(candle_core::DType::F32)?
                .to_vec1()?;
            let next = argmax_first(&row).ok_or_else(|| {
                Error::InvalidArgument("BLIP decoder produced only NaN logits".into())
            })? as u32;
            ids.push(next);
            if next == sep {
                break;
            }
        }
        self.reset();
        Ok(ids)
    }
}
