//! Image-encoder configuration: transformers' `SamVisionConfig` fields, with presets.

use serde::{Deserialize, Serialize};

fn d_hidden() -> usize {
    768
}
fn d_layers() -> usize {
    12
}
fn d_heads() -> usize {
    12
}
fn d_mlp_ratio() -> f64 {
    4.0
}
fn d_globals() -> Vec<usize> {
    vec![2, 5, 8, 11]
}
fn d_image() -> usize {
    1024
}
fn d_patch() -> usize {
    16
}
fn d_channels() -> usize {
    3
}
fn d_out() -> usize {
    256
}
fn d_window() -> usize {
    14
}
fn d_true() -> bool {
    true
}
fn d_eps() -> f64 {
    1e-6
}

/// Configuration of the ViT image encoder. Deserialises from the `vision_config` section of a
/// transformers `SamConfig` (`config.json`); unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageEncoderConfig {
    /// Embedding width (768 / 1024 / 1280 for ViT-B / L / H).
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    /// Number of transformer blocks.
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    /// Attention heads per block.
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    /// MLP hidden width; `hidden_size * mlp_ratio` when absent.
    #[serde(default)]
    pub mlp_dim: Option<usize>,
    /// MLP expansion ratio, used when `mlp_dim` is absent.
    #[serde(default = "d_mlp_ratio")]
    pub mlp_ratio: f64,
    /// Blocks using global attention; the others use windowed attention.
    #[serde(default = "d_globals")]
    pub global_attn_indexes: Vec<usize>,
    /// Input side length (the image is resized and padded to this square).
    #[serde(default = "d_image")]
    pub image_size: usize,
    /// Patch size.
    #[serde(default = "d_patch")]
    pub patch_size: usize,
    /// Input channels.
    #[serde(default = "d_channels")]
    pub num_channels: usize,
    /// Channels of the output embedding (the neck's width).
    #[serde(default = "d_out")]
    pub output_channels: usize,
    /// Window size of windowed-attention blocks (0: every block is global).
    #[serde(default = "d_window")]
    pub window_size: usize,
    /// Whether the qkv projection has a bias.
    #[serde(default = "d_true")]
    pub qkv_bias: bool,
    /// Whether an absolute position embedding is added after the patch embedding.
    #[serde(default = "d_true")]
    pub use_abs_pos: bool,
    /// Whether attention adds decomposed relative-position terms.
    #[serde(default = "d_true")]
    pub use_rel_pos: bool,
    /// LayerNorm epsilon.
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
}

impl Default for ImageEncoderConfig {
    fn default() -> Self {
        Self::vit_b()
    }
}

impl ImageEncoderConfig {
    fn preset(hidden: usize, layers: usize, heads: usize, globals: &[usize]) -> Self {
        Self {
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            mlp_dim: Some(hidden * 4),
            mlp_ratio: 4.0,
            global_attn_indexes: globals.to_vec(),
            image_size: 1024,
            patch_size: 16,
            num_channels: 3,
            output_channels: 256,
            window_size: 14,
            qkv_bias: true,
            use_abs_pos: true,
            use_rel_pos: true,
            layer_norm_eps: 1e-6,
        }
    }

    /// SAM ViT-B (`sam_vit_b_01ec64`, `facebook/sam-vit-base`).
    pub fn vit_b() -> Self {
        Self::preset(768, 12, 12, &[2, 5, 8, 11])
    }

    /// SAM ViT-L (`sam_vit_l_0b3195`, `facebook/sam-vit-large`).
    pub fn vit_l() -> Self {
        Self::preset(1024, 24, 16, &[5, 11, 17, 23])
    }

    /// SAM ViT-H (`sam_vit_h_4b8939`, `facebook/sam-vit-huge`).
    pub fn vit_h() -> Self {
        Self::preset(1280, 32, 16, &[7, 15, 23, 31])
    }

    /// A tiny configuration for tests and doc examples (64 wide, 2 blocks, 160² input).
    pub fn tiny_for_tests() -> Self {
        Self {
            hidden_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            mlp_dim: Some(128),
            global_attn_indexes: vec![1],
            image_size: 160,
            output_channels: 32,
            window_size: 4,
            ..Self::vit_b()
        }
    }

    /// MLP hidden width.
    pub fn mlp_dim(&self) -> usize {
        self.mlp_dim
            .unwrap_or((self.hidden_size as f64 * self.mlp_ratio) as usize)
    }

    /// Side of the patch grid (`image_size / patch_size`, 64 for SAM).
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size.max(1)
    }

    /// Checks internal consistency (divisibility, indexes in range).
    pub fn validate(&self) -> Result<(), String> {
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            return Err(format!(
                "image_size {} is not a multiple of patch_size {}",
                self.image_size, self.patch_size
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if let Some(i) = self
            .global_attn_indexes
            .iter()
            .find(|&&i| i >= self.num_hidden_layers)
        {
            return Err(format!(
                "global attention index {i} >= num_hidden_layers {}",
                self.num_hidden_layers
            ));
        }
        Ok(())
    }
}
