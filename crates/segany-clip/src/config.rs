//! Model geometry: presets, transformers `config.json`, open_clip model configs.

use serde::Deserialize;

use crate::activation::Activation;
use crate::error::{ClipError, Result};

/// Geometry of the vision tower (a ViT).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipVisionConfig {
    /// Input side length in pixels.
    pub image_size: usize,
    /// Patch side length in pixels.
    pub patch_size: usize,
    /// Residual stream width.
    pub width: usize,
    /// Number of residual blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Hidden size of the MLPs.
    pub mlp_dim: usize,
    /// MLP activation.
    pub activation: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
}

/// Geometry of the text tower (a causal transformer).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipTextConfig {
    /// Vocabulary size (49408 for every released CLIP).
    pub vocab_size: usize,
    /// Context length (77).
    pub context_length: usize,
    /// Residual stream width.
    pub width: usize,
    /// Number of residual blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Hidden size of the MLPs.
    pub mlp_dim: usize,
    /// MLP activation.
    pub activation: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
}

/// Full CLIP geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    /// Vision tower.
    pub vision: ClipVisionConfig,
    /// Text tower.
    pub text: ClipTextConfig,
    /// Joint embedding size (projection output).
    pub embed_dim: usize,
    /// Initial value of `logit_scale` (log of the temperature), used only when the checkpoint
    /// has none.
    pub logit_scale_init: f64,
}

const LOGIT_SCALE_INIT: f64 = 2.6592; // ln(1 / 0.07)

impl ClipVisionConfig {
    fn vit(image_size: usize, patch_size: usize, width: usize, layers: usize) -> Self {
        Self {
            image_size,
            patch_size,
            width,
            layers,
            heads: width / 64,
            mlp_dim: width * 4,
            activation: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }

    /// Number of patches per side.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Number of tokens, class token included.
    pub fn num_tokens(&self) -> usize {
        self.grid_size() * self.grid_size() + 1
    }
}

impl ClipTextConfig {
    fn openai(width: usize) -> Self {
        Self {
            vocab_size: 49408,
            context_length: 77,
            width,
            layers: 12,
            heads: width / 64,
            mlp_dim: width * 4,
            activation: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

impl ClipConfig {
    fn openai(vision: ClipVisionConfig, text_width: usize, embed_dim: usize) -> Self {
        Self {
            vision,
            text: ClipTextConfig::openai(text_width),
            embed_dim,
            logit_scale_init: LOGIT_SCALE_INIT,
        }
    }

    /// OpenAI ViT-B/32 (224 px, 7x7 grid, 512-d embeddings).
    pub fn vit_b_32() -> Self {
        Self::openai(ClipVisionConfig::vit(224, 32, 768, 12), 512, 512)
    }

    /// OpenAI ViT-B/16 (224 px, 14x14 grid, 512-d embeddings); also `CS-ViT-B/16`.
    pub fn vit_b_16() -> Self {
        Self::openai(ClipVisionConfig::vit(224, 16, 768, 12), 512, 512)
    }

    /// OpenAI ViT-L/14 (224 px, 16x16 grid, 768-d embeddings).
    pub fn vit_l_14() -> Self {
        Self::openai(ClipVisionConfig::vit(224, 14, 1024, 24), 768, 768)
    }

    /// OpenAI ViT-L/14@336px (24x24 grid, 768-d embeddings); also `CS-ViT-L/14@336px`.
    pub fn vit_l_14_336() -> Self {
        Self::openai(ClipVisionConfig::vit(336, 14, 1024, 24), 768, 768)
    }

    /// A preset by its OpenAI / CLIP Surgery name (`ViT-B/16`, `CS-ViT-L/14@336px`,
    /// `ViT-B-16`, ...).
    pub fn preset(name: &str) -> Option<Self> {
        let n = name.trim_start_matches("CS-").replace(['/', '_'], "-");
        match n.to_ascii_lowercase().as_str() {
            "vit-b-32" => Some(Self::vit_b_32()),
            "vit-b-16" => Some(Self::vit_b_16()),
            "vit-l-14" => Some(Self::vit_l_14()),
            "vit-l-14@336px" | "vit-l-14-336" | "vit-l-14@336" => Some(Self::vit_l_14_336()),
            _ => None,
        }
    }

    /// Sets the activation of both towers (QuickGELU for OpenAI weights, GELU for LAION).
    pub fn with_activation(mut self, act: Activation) -> Self {
        self.vision.activation = act;
        self.text.activation = act;
        self
    }

    /// Checks divisibility and non-zero sizes.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, value: usize, reason: &str| {
            Err(ClipError::InvalidConfig {
                field: field.into(),
                value: value.to_string(),
                reason: reason.into(),
            })
        };
        let v = &self.vision;
        let t = &self.text;
        for (f, x) in [
            ("vision.width", v.width),
            ("vision.heads", v.heads),
            ("vision.layers", v.layers),
            ("vision.patch_size", v.patch_size),
            ("text.width", t.width),
            ("text.heads", t.heads),
            ("text.layers", t.layers),
            ("text.context_length", t.context_length),
            ("text.vocab_size", t.vocab_size),
            ("embed_dim", self.embed_dim),
        ] {
            if x == 0 {
                return bad(f, x, "must be positive");
            }
        }
        if !v.width.is_multiple_of(v.heads) {
            return bad("vision.width", v.width, "not divisible by vision.heads");
        }
        if !t.width.is_multiple_of(t.heads) {
            return bad("text.width", t.width, "not divisible by text.heads");
        }
        if !v.image_size.is_multiple_of(v.patch_size) {
            return bad(
                "vision.image_size",
                v.image_size,
                "not divisible by patch_size",
            );
        }
        Ok(())
    }

    /// Parses a transformers `CLIPModel` `config.json` (missing fields take the transformers
    /// defaults, as `CLIPConfig` does).
    pub fn from_transformers_json(json: &str) -> Result<Self> {
        let hf: HfConfig = serde_json::from_str(json).map_err(|source| ClipError::ConfigParse {
            what: "transformers config.json".into(),
            source,
        })?;
        let act = |field: &str, s: &str| {
            Activation::from_hidden_act(s).ok_or_else(|| ClipError::InvalidConfig {
                field: field.into(),
                value: s.into(),
                reason: "unsupported activation (quick_gelu, gelu, gelu_new)".into(),
            })
        };
        let (t, v) = (hf.text_config, hf.vision_config);
        let cfg = Self {
            vision: ClipVisionConfig {
                image_size: v.image_size,
                patch_size: v.patch_size,
                width: v.hidden_size,
                layers: v.num_hidden_layers,
                heads: v.num_attention_heads,
                mlp_dim: v.intermediate_size,
                activation: act("vision_config.hidden_act", &v.hidden_act)?,
                layer_norm_eps: v.layer_norm_eps,
            },
            text: ClipTextConfig {
                vocab_size: t.vocab_size,
                context_length: t.max_position_embeddings,
                width: t.hidden_size,
                layers: t.num_hidden_layers,
                heads: t.num_attention_heads,
                mlp_dim: t.intermediate_size,
                activation: act("text_config.hidden_act", &t.hidden_act)?,
                layer_norm_eps: t.layer_norm_eps,
            },
            embed_dim: hf.projection_dim,
            logit_scale_init: hf.logit_scale_init_value,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses an open_clip model config: either `open_clip_config.json` (with a `model_cfg`
    /// object) or a bare `model_configs/*.json`. `quick_gelu` selects the activation.
    pub fn from_open_clip_json(json: &str) -> Result<Self> {
        let parse_err = |source| ClipError::ConfigParse {
            what: "open_clip config".into(),
            source,
        };
        let value: serde_json::Value = serde_json::from_str(json).map_err(parse_err)?;
        let model = value.get("model_cfg").cloned().unwrap_or(value);
        let oc: OcConfig = serde_json::from_value(model).map_err(parse_err)?;
        let act = if oc.quick_gelu {
            Activation::QuickGelu
        } else {
            Activation::Gelu
        };
        let v = oc.vision_cfg;
        let t = oc.text_cfg;
        let cfg = Self {
            vision: ClipVisionConfig {
                image_size: v.image_size,
                patch_size: v.patch_size,
                width: v.width,
                layers: v.layers,
                heads: v.width / v.head_width.max(1),
                mlp_dim: (v.width as f64 * v.mlp_ratio) as usize,
                activation: act,
                layer_norm_eps: 1e-5,
            },
            text: ClipTextConfig {
                vocab_size: t.vocab_size,
                context_length: t.context_length,
                width: t.width,
                layers: t.layers,
                heads: t.heads,
                mlp_dim: (t.width as f64 * t.mlp_ratio) as usize,
                activation: act,
                layer_norm_eps: 1e-5,
            },
            embed_dim: oc.embed_dim,
            logit_scale_init: LOGIT_SCALE_INIT,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

// ---- transformers config.json -----------------------------------------------------------

fn d_proj() -> usize {
    512
}
fn d_scale() -> f64 {
    LOGIT_SCALE_INIT
}
fn d_eps() -> f64 {
    1e-5
}
fn d_act() -> String {
    "quick_gelu".into()
}

#[derive(Deserialize)]
struct HfConfig {
    #[serde(default)]
    text_config: HfText,
    #[serde(default)]
    vision_config: HfVision,
    #[serde(default = "d_proj")]
    projection_dim: usize,
    #[serde(default = "d_scale")]
    logit_scale_init_value: f64,
}

#[derive(Deserialize)]
#[serde(default)]
struct HfText {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    hidden_act: String,
    layer_norm_eps: f64,
}

impl Default for HfText {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: d_act(),
            layer_norm_eps: d_eps(),
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
struct HfVision {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    image_size: usize,
    patch_size: usize,
    hidden_act: String,
    layer_norm_eps: f64,
}

impl Default for HfVision {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 224,
            patch_size: 32,
            hidden_act: d_act(),
            layer_norm_eps: d_eps(),
        }
    }
}

// ---- open_clip model_cfg ----------------------------------------------------------------

fn d_mlp_ratio() -> f64 {
    4.0
}
fn d_head_width() -> usize {
    64
}
fn d_ctx() -> usize {
    77
}
fn d_vocab() -> usize {
    49408
}

#[derive(Deserialize)]
struct OcConfig {
    embed_dim: usize,
    #[serde(default)]
    quick_gelu: bool,
    vision_cfg: OcVision,
    text_cfg: OcText,
}

#[derive(Deserialize)]
struct OcVision {
    image_size: usize,
    layers: usize,
    width: usize,
    patch_size: usize,
    #[serde(default = "d_head_width")]
    head_width: usize,
    #[serde(default = "d_mlp_ratio")]
    mlp_ratio: f64,
}

#[derive(Deserialize)]
struct OcText {
    #[serde(default = "d_ctx")]
    context_length: usize,
    #[serde(default = "d_vocab")]
    vocab_size: usize,
    width: usize,
    heads: usize,
    layers: usize,
    #[serde(default = "d_mlp_ratio")]
    mlp_ratio: f64,
}
