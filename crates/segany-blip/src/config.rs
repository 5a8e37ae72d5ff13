//! BLIP configuration, read from a transformers `config.json` (`BlipConfig`), with the
//! defaults of transformers' `BlipTextConfig` / `BlipVisionConfig` for every absent field
//! (recent `save_pretrained` writes only non-default values) and presets for the two
//! captioning checkpoints SSA-engine uses.

use candle_transformers::models::{blip, blip_text};
use segany_core::{Error, Result};
use serde::Deserialize;

fn act_gelu() -> candle_nn::Activation {
    candle_nn::Activation::Gelu
}

/// The text decoder (`text_config`): a BERT with cross-attention to the image tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct BlipTextConfig {
    /// Vocabulary size (30524 for the Salesforce checkpoints: BERT + `[DEC]` + `[ENC]`).
    pub vocab_size: usize,
    /// Width of the decoder.
    pub hidden_size: usize,
    /// Width of the image tokens it cross-attends to (= the vision `hidden_size`).
    pub encoder_hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Learned absolute positions.
    pub max_position_embeddings: usize,
    /// MLP activation (`"gelu"` is the exact erf GELU).
    #[serde(default = "act_gelu")]
    pub hidden_act: candle_nn::Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// The `[DEC]` token that starts every caption.
    pub bos_token_id: u32,
    /// `[SEP]`: generation stops after emitting it (`generate(eos_token_id=sep_token_id)`).
    pub sep_token_id: u32,
    /// `[PAD]`.
    pub pad_token_id: u32,
    /// Whether the LM head's `decoder.weight` is the word embedding matrix.
    pub tie_word_embeddings: bool,
}

impl Default for BlipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 30524,
            hidden_size: 768,
            encoder_hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 512,
            hidden_act: act_gelu(),
            layer_norm_eps: 1e-12,
            bos_token_id: 30522,
            sep_token_id: 102,
            pad_token_id: 0,
            tie_word_embeddings: true,
        }
    }
}

/// The ViT image encoder (`vision_config`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct BlipVisionConfig {
    /// Token width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Input side (the position table has `(image_size / patch_size)² + 1` rows).
    pub image_size: usize,
    /// Patch side.
    pub patch_size: usize,
    /// MLP activation.
    #[serde(default = "act_gelu")]
    pub hidden_act: candle_nn::Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
}

impl Default for BlipVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 384,
            patch_size: 16,
            hidden_act: act_gelu(),
            layer_norm_eps: 1e-5,
        }
    }
}

/// `BlipConfig` of `BlipForConditionalGeneration`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct BlipConfig {
    /// The caption decoder.
    pub text_config: BlipTextConfig,
    /// The image encoder.
    pub vision_config: BlipVisionConfig,
    /// Top-level tie flag (transformers ties when either is true).
    pub tie_word_embeddings: Option<bool>,
}

impl BlipConfig {
    /// `Salesforce/blip-image-captioning-base` (ViT-B/16, SSA-engine's `--light_mode`).
    pub fn image_captioning_base() -> Self {
        Self {
            text_config: BlipTextConfig {
                num_attention_heads: 12,
                ..Default::default()
            },
            vision_config: BlipVisionConfig::default(),
            tie_word_embeddings: None,
        }
    }

    /// `Salesforce/blip-image-captioning-large` (ViT-L/16, SSA-engine's default).
    pub fn image_captioning_large() -> Self {
        Self {
            text_config: BlipTextConfig {
                num_attention_heads: 12,
                encoder_hidden_size: 1024,
                ..Default::default()
            },
            vision_config: BlipVisionConfig {
                hidden_size: 1024,
                intermediate_size: 4096,
                num_hidden_layers: 24,
                num_attention_heads: 16,
                ..Default::default()
            },
            tie_word_embeddings: None,
        }
    }

    /// Parses a transformers `config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text).map_err(|e| Error::Config {
            path: None,
            reason: format!("BLIP config.json: {e}"),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the sizes the model relies on.
    pub fn validate(&self) -> Result<()> {
        let (t, v) = (&self.text_config, &self.vision_config);
        let bad = |reason: String| Err(Error::Config { path: None, reason });
        if t.num_attention_heads == 0 || t.hidden_size % t.num_attention_heads != 0 {
            return bad(format!(
                "text_config.hidden_size {} is not a multiple of num_attention_heads {}",
                t.hidden_size, t.num_attention_heads
            ));
        }
        if v.num_attention_heads == 0 || v.hidden_size % v.num_attention_heads != 0 {
            return bad(format!(
                "vision_config.hidden_size {} is not a multiple of num_attention_heads {}",
                v.hidden_size, v.num_attention_heads
            ));
        }
        if v.patch_size == 0 || v.image_size % v.patch_size != 0 {
            return bad(format!(
                "vision_config.image_size {} is not a multiple of patch_size {}",
                v.image_size, v.patch_size
            ));
        }
        if t.encoder_hidden_size != v.hidden_size {
            return bad(format!(
                "text_config.encoder_hidden_size {} differs from vision_config.hidden_size {}",
                t.encoder_hidden_size, v.hidden_size
            ));
        }
        for (name, id) in [
            ("bos_token_id", t.bos_token_id),
            ("sep_token_id", t.sep_token_id),
            ("pad_token_id", t.pad_token_id),
        ] {
            if id as usize >= t.vocab_size {
                return bad(format!(
                    "text_config.{name} {id} is outside the vocabulary ({})",
                    t.vocab_size
                ));
            }
        }
        Ok(())
    }

    /// Whether the LM head shares the word embeddings.
    pub fn ties_word_embeddings(&self) -> bool {
        self.text_config.tie_word_embeddings || self.tie_word_embeddings.unwrap_or(false)
    }

    /// The candle-transformers configuration (fields it does not use are filled with zeros).
    pub fn to_candle(&self) -> blip::Config {
        let (t, v) = (&self.text_config, &self.vision_config);
        blip::Config {
            text_config: blip_text::Config {
                vocab_size: t.vocab_size,
                hidden_size: t.hidden_size,
                encoder_hidden_size: t.encoder_hidden_size,
                intermediate_size: t.intermediate_size,
                projection_dim: 0,
                num_hidden_layers: t.num_hidden_layers,
                num_attention_heads: t.num_attention_heads,
                max_position_embeddings: t.max_position_embeddings,
                hidden_act: t.hidden_act,
                layer_norm_eps: t.layer_norm_eps,
                is_decoder: true,
            },
            vision_config: blip::VisionConfig {
                hidden_size: v.hidden_size,
                intermediate_size: v.intermediate_size,
                projection_dim: 0,
                num_hidden_layers: v.num_hidden_layers,
                num_attention_heads: v.num_attention_heads,
                image_size: v.image_size,
                patch_size: v.patch_size,
                hidden_act: v.hidden_act,
                layer_norm_eps: v.layer_norm_eps,
            },
            projection_dim: 0,
            image_text_hidden_size: 0,
        }
    }
}
