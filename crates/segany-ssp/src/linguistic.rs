//! The linguistic attention adapter: `clip_proj` on the `ln_final` word features, a
//! bidirectional GRU (`text_proj`) over all 77 positions, and `phrase_attn` pooling the projected
//! words into one sentence vector.

use crate::attention::masked_renormalised_softmax;
use crate::gru::BiGru;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::{linear, CpuMatmul, Linear};

/// Output of [`LinguisticAdapter::forward`].
#[derive(Debug, Clone)]
pub struct LinguisticOutput {
    /// Projected words `E = clip_proj(W)`, `(B, T, 512)`: keys and values of the image-to-text
    /// attention.
    pub words: Tensor,
    /// The sentence prompt vector `(B, 512)`.
    pub sentence: Tensor,
}

/// `clip_proj` + `text_proj` + `phrase_attn`.
#[derive(Debug, Clone)]
pub struct LinguisticAdapter {
    clip_proj: Linear,
    gru: BiGru,
    phrase_fc: Linear,
}

impl LinguisticAdapter {
    /// Loads `clip_proj.*`, `text_proj.*` and `phrase_attn.fc.*` from the head's root `vb`.
    pub fn new(clip_dim: usize, dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            clip_proj: linear(clip_dim, dim, vb.pp("clip_proj"))?,
            gru: BiGru::new(dim, dim, vb.pp("text_proj"))?,
            phrase_fc: linear(2 * dim, 1, vb.pp("phrase_attn").pp("fc"))?,
        })
    }

    /// The arithmetic of the adapter's products on the CPU ([`CpuMatmul`]; the GRU's
    /// recurrence keeps f32); whether bf16 is on.
    pub fn set_cpu_matmul(&mut self, mode: CpuMatmul) -> Result<bool> {
        Ok(self.clip_proj.set_cpu_matmul(mode)?
            & self.gru.set_cpu_matmul(mode)?
            & self.phrase_fc.set_cpu_matmul(mode)?)
    }

    /// `word_features (B, T, C)` (CLIP `ln_final` outputs) and `valid (B, T)` (1 for real
    /// tokens, 0 for padding).
    pub fn forward(&self, word_features: &Tensor, valid: &Tensor) -> Result<LinguisticOutput> {
        let words = self.clip_proj.forward(word_features)?;
        let context = self.gru.forward(&words)?;
        let scores = self.phrase_fc.forward(&context)?.squeeze(2)?; // (B, T)
        let weights = masked_renormalised_softmax(&scores, valid)?;
        let sentence = weights.unsqueeze(1)?.matmul(&words)?.squeeze(1)?;
        Ok(LinguisticOutput { words, sentence })
    }
}
