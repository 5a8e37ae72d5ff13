//! The text tower: token + positional embeddings, causal transformer, `ln_final`,
//! `text_projection` at the end-of-text token.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{embedding, layer_norm, Embedding, LayerNorm, VarBuilder};

use crate::attention::Mask;
use crate::config::ClipTextConfig;
use crate::transformer::Transformer;

/// Output of the text tower.
#[derive(Debug, Clone)]
pub struct TextFeatures {
    /// Projected end-of-text embeddings `[T, D]` (not normalised).
    pub embeds: Tensor,
    /// `ln_final` outputs of every position `[T, L, W]` (before projection).
    pub tokens: Tensor,
}

/// `TextTransformer` (the root-level text keys of the OpenAI state dict).
#[derive(Debug, Clone)]
pub struct TextTransformer {
    token_embedding: Embedding,
    positional_embedding: Tensor,
    transformer: Transformer,
    ln_final: LayerNorm,
    text_projection: Tensor,
    cfg: ClipTextConfig,
}

impl TextTransformer {
    /// Reads `token_embedding`, `positional_embedding`, `transformer`, `ln_final` and
    /// `text_projection` (`[width, embed_dim]`) under `vb` (the checkpoint root).
    pub fn new(cfg: &ClipTextConfig, embed_dim: usize, vb: VarBuilder) -> Result<Self> {
        let w = cfg.width;
        Ok(Self {
            token_embedding: embedding(cfg.vocab_size, w, vb.pp("token_embedding"))?,
            positional_embedding: vb.get((cfg.context_length, w), "positional_embedding")?,
            transformer: Transformer::new(
                w,
                cfg.layers,
                cfg.heads,
                cfg.mlp_dim,
                cfg.activation,
                cfg.layer_norm_eps,
                vb.pp("transformer"),
            )?,
            ln_final: layer_norm(w, cfg.layer_norm_eps, vb.pp("ln_final"))?,
            text_projection: vb.get((w, embed_dim), "text_projection")?,
            cfg: cfg.clone(),
        })
    }

    /// The arithmetic of the transformer's linear layers on the CPU in f32 (see
    /// [`segany_core::nn::CpuMatmul`]); returns whether they now multiply in bf16 (`false` on CPUs without
    /// AVX-512 BF16 and for weights off the CPU or not in f32).
    pub fn set_cpu_matmul(&mut self, mode: segany_core::nn::CpuMatmul) -> Result<bool> {
        self.transformer.set_cpu_matmul(mode)
    }
    /// The configuration the tower was built with.
    pub fn config(&self) -> &ClipTextConfig {
        &self.cfg
    }

    /// `ln_final` outputs `[T, L, W]` for token ids `[T, L]` (any integer dtype, L ≤ context).
    pub fn forward_tokens(&self, ids: &Tensor) -> Result<Tensor> {
        let ids = ids.to_dtype(DType::U32)?;
        let (_, l) = ids.dims2()?;
        let x = self.token_embedding.forward(&ids)?;
        let x = x.broadcast_add(&self.positional_embedding.narrow(0, 0, l)?)?;
        let x = self.transformer.forward(&x, Mask::Causal)?;
        self.ln_final.forward(&x)
    }

    /// Pooled embeddings and token features. The pooled token is the position of the largest
    /// id in each row (end-of-text, 49407), as OpenAI and open_clip do.
    pub fn forward_features(&self, ids: &Tensor) -> Result<TextFeatures> {
        let tokens = self.forward_tokens(ids)?;
        let embeds = self.pool(&tokens, &end_of_text(ids)?)?;
        Ok(TextFeatures { embeds, tokens })
    }

    /// Projected end-of-text embeddings `[T, D]` only, as [`Self::forward_features`] gives them,
    /// computed on the first `max(end-of-text) + 1` positions. Attention is causal, so no later
    /// position (padding) reaches an end-of-text token: a short prompt padded to 77 ids costs a
    /// few positions instead of 77.
    pub fn forward_embeds(&self, ids: &Tensor) -> Result<Tensor> {
        let eot = end_of_text(ids)?;
        let len = eot.iter().max().map_or(1, |&m| m + 1);
        let tokens = self.forward_tokens(&ids.narrow(1, 0, len)?)?;
        self.pool(&tokens, &eot)
    }

    /// `text_projection` of `tokens [T, L, W]` at position `eot[t]` of each row.
    fn pool(&self, tokens: &Tensor, eot: &[usize]) -> Result<Tensor> {
        let (t, l, w) = tokens.dims3()?;
        let idx: Vec<u32> = eot
            .iter()
            .enumerate()
            .map(|(i, &p)| (i * l + p) as u32)
            .collect();
        let idx = Tensor::from_vec(idx, t, tokens.device())?;
        let pooled = tokens.reshape((t * l, w))?.index_select(&idx, 0)?;
        pooled.matmul(&self.text_projection)
    }
}

/// The end-of-text position of each row of `ids [T, L]`: its first maximum.
fn end_of_text(ids: &Tensor) -> Result<Vec<usize>> {
    let rows = ids.to_dtype(DType::U32)?.to_vec2::<u32>()?;
    Ok(rows.iter().map(|row| first_argmax(row)).collect())
}

impl Module for TextTransformer {
    /// Projected end-of-text embeddings `[T, D]` (not normalised).
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.forward_embeds(ids)
    }
}

/// Index of the first maximum (torch's `argmax` tie rule).
fn first_argmax(row: &[u32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}
