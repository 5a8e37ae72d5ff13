//! Zero-shot classification: labels × prompt templates → class embeddings → probabilities.

use candle_core::{Device, Tensor, D};

use crate::error::{ClipError, Result};
use crate::model::{l2_normalize, ClipModel};
use crate::tokenizer::{ClipTokenizer, TokenizeOptions};

/// Class embeddings built the standard CLIP way: for each label, every template filled in
/// (`{}` is replaced by the label), encoded, L2-normalised, averaged, and normalised again.
#[derive(Debug, Clone)]
pub struct ZeroShotClassifier {
    labels: Vec<String>,
    /// `[L, D]`, unit rows.
    class_embeds: Tensor,
    logit_scale: f64,
}

impl ZeroShotClassifier {
    /// Encodes `labels.len() × templates.len()` prompts in batches of `batch_size` texts.
    /// An empty `templates` means the label alone (`"{}"`). Over-long prompts are truncated
    /// as `clip.tokenize(truncate=True)` does.
    pub fn new<L: AsRef<str>, T: AsRef<str>>(
        model: &ClipModel,
        tokenizer: &ClipTokenizer,
        labels: &[L],
        templates: &[T],
        batch_size: usize,
        device: &Device,
    ) -> Result<Self> {
        if labels.is_empty() {
            return Err(ClipError::EmptyInput {
                what: "labels".into(),
            });
        }
        let templates: Vec<&str> = if templates.is_empty() {
            vec!["{}"]
        } else {
            templates.iter().map(AsRef::as_ref).collect()
        };
        if let Some(t) = templates.iter().find(|t| !t.contains("{}")) {
            return Err(ClipError::InvalidConfig {
                field: "template".into(),
                value: (*t).into(),
                reason: "has no `{}` placeholder for the label".into(),
            });
        }
        let prompts: Vec<String> = labels
            .iter()
            .flat_map(|l| templates.iter().map(move |t| t.replace("{}", l.as_ref())))
            .collect();
        let opts = TokenizeOptions {
            truncate: true,
            allow_empty: false,
        };
        let mut embeds = Vec::new();
        for chunk in prompts.chunks(batch_size.max(1)) {
            let ids = tokenizer.tokenize(chunk, opts, device)?;
            embeds.push(l2_normalize(&model.encode_text_embeds(&ids)?)?);
        }
        let embeds = Tensor::cat(&embeds, 0)?; // [L*K, D]
        let d = embeds.dim(1)?;
        let class = embeds
            .reshape((labels.len(), templates.len(), d))?
            .mean(1)?;
        Ok(Self {
            labels: labels.iter().map(|l| l.as_ref().to_string()).collect(),
            class_embeds: l2_normalize(&class)?,
            logit_scale: model.logit_scale(),
        })
    }

    /// The labels, in column order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Unit class embeddings `[L, D]`.
    pub fn class_embeds(&self) -> &Tensor {
        &self.class_embeds
    }

    /// Scaled cosine logits `[B, L]` for image embeddings `[B, D]` (normalised or not).
    pub fn logits(&self, image_embeds: &Tensor) -> Result<Tensor> {
        let img = l2_normalize(image_embeds)?;
        Ok((img.matmul(&self.class_embeds.t()?)? * self.logit_scale)?)
    }

    /// Probabilities `[B, L]` (softmax over labels) for image embeddings `[B, D]`.
    pub fn probabilities(&self, image_embeds: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::softmax(
            &self.logits(image_embeds)?,
            D::Minus1,
        )?)
    }

    /// Encodes pixels `[B, 3, S, S]` with `model` and classifies them.
    pub fn classify(&self, model: &ClipModel, px: &Tensor) -> Result<Tensor> {
        self.probabilities(&model.encode_image(px)?)
    }
}
