//! Prompt-encoder and mask-decoder configuration: transformers' `SamPromptEncoderConfig` and
//! `SamMaskDecoderConfig` fields, defaults as released SAM.

use serde::{Deserialize, Serialize};

fn d256() -> usize {
    256
}
fn d1024() -> usize {
    1024
}
fn d16() -> usize {
    16
}
fn d4() -> usize {
    4
}
fn d2048() -> usize {
    2048
}
fn d2() -> usize {
    2
}
fn d8() -> usize {
    8
}
fn d3() -> usize {
    3
}

/// Prompt encoder configuration (`prompt_encoder_config` in `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptEncoderConfig {
    /// Embedding width (256).
    #[serde(default = "d256")]
    pub hidden_size: usize,
    /// Side of the padded encoder input (1024); point coordinates are normalised by it.
    #[serde(default = "d1024")]
    pub image_size: usize,
    /// Patch size of the image encoder (16); the embedding grid is `image_size / patch_size`.
    #[serde(default = "d16")]
    pub patch_size: usize,
    /// Channels of the mask-downscaling network (16).
    #[serde(default = "d16")]
    pub mask_input_channels: usize,
    /// Number of point embeddings (4: background, foreground, box corners).
    #[serde(default = "d4")]
    pub num_point_embeddings: usize,
}

impl Default for PromptEncoderConfig {
    fn default() -> Self {
        Self {
            hidden_size: 256,
            image_size: 1024,
            patch_size: 16,
            mask_input_channels: 16,
            num_point_embeddings: 4,
        }
    }
}

impl PromptEncoderConfig {
    /// Side of the image-embedding grid (64 for SAM).
    pub fn embedding_size(&self) -> usize {
        self.image_size / self.patch_size.max(1)
    }

    /// Side of the low-resolution mask input (256 for SAM).
    pub fn mask_input_size(&self) -> usize {
        4 * self.embedding_size()
    }
}

/// Mask decoder configuration (`mask_decoder_config` in `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskDecoderConfig {
    /// Transformer width (256).
    #[serde(default = "d256")]
    pub hidden_size: usize,
    /// Two-way transformer MLP width (2048).
    #[serde(default = "d2048")]
    pub mlp_dim: usize,
    /// Two-way transformer depth (2).
    #[serde(default = "d2")]
    pub num_hidden_layers: usize,
    /// Attention heads (8).
    #[serde(default = "d8")]
    pub num_attention_heads: usize,
    /// Down-sampling of the cross-attention width (2).
    #[serde(default = "d2")]
    pub attention_downsample_rate: usize,
    /// Number of multimask outputs (3); one more token gives the single-mask output.
    #[serde(default = "d3")]
    pub num_multimask_outputs: usize,
    /// Linear layers of the IoU head (3).
    #[serde(default = "d3")]
    pub iou_head_depth: usize,
    /// Hidden width of the IoU head (256).
    #[serde(default = "d256")]
    pub iou_head_hidden_dim: usize,
    /// Epsilon of the two-way attention blocks' LayerNorms. The official code uses PyTorch's
    /// default 1e-5 (`None`); transformers' `SamModel` reads this field (1e-6 in its configs).
    /// The final token LayerNorm uses 1e-5 in both.
    #[serde(default)]
    pub layer_norm_eps: Option<f64>,
}

impl Default for MaskDecoderConfig {
    fn default() -> Self {
        Self {
            hidden_size: 256,
            mlp_dim: 2048,
            num_hidden_layers: 2,
            num_attention_heads: 8,
            attention_downsample_rate: 2,
            num_multimask_outputs: 3,
            iou_head_depth: 3,
            iou_head_hidden_dim: 256,
            layer_norm_eps: None,
        }
    }
}

/// LayerNorm epsilon of the two-way transformer: PyTorch's default (1e-5), as the official
/// `TwoWayTransformer` builds its `nn.LayerNorm`s (see [`MaskDecoderConfig::layer_norm_eps`]).
pub const TRANSFORMER_LAYER_NORM_EPS: f64 = 1e-5;
/// LayerNorm2d epsilon of the mask-downscaling and output-upscaling networks.
pub const LAYER_NORM_2D_EPS: f64 = 1e-6;
