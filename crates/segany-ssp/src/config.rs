//! SSP-SAM configuration: the two released variants differ only in the CLIP width, the CLIP
//! canvas side and the patch size (`models/ssp_sam_224.py` vs `models/ssp_sam_336.py`).

use segany_sam_decoder::{MaskDecoderConfig, PromptEncoderConfig};
use serde::{Deserialize, Serialize};

fn d512() -> usize {
    512
}
fn d256() -> usize {
    256
}
fn d128() -> usize {
    128
}
fn d6() -> usize {
    6
}
fn d8() -> usize {
    8
}
fn d2048() -> usize {
    2048
}
fn d77() -> usize {
    77
}
fn eps() -> f64 {
    1e-5
}

/// Hyper-parameters of the SSP-SAM head (everything after the CLIP encoders) and of the SAM
/// prompt encoder / mask decoder it drives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SspSamConfig {
    /// CLIP embedding width `C` of both the image tokens and the `ln_final` word features
    /// (512 for ViT-B/16, 768 for ViT-L/14@336).
    pub clip_dim: usize,
    /// Side `S` of the square CLIP canvas (224 or 336).
    pub image_size: usize,
    /// CLIP patch size (16 or 14); the patch grid is `image_size / patch_size`.
    pub patch_size: usize,
    /// Width of the linguistic and visual adapters (512).
    #[serde(default = "d512")]
    pub adapter_dim: usize,
    /// Heads of the image-to-text attention (8).
    #[serde(default = "d8")]
    pub adapter_heads: usize,
    /// Width of the prompt transformer and of SAM's prompts (256).
    #[serde(default = "d256")]
    pub hidden_dim: usize,
    /// Number of semantic-spatial prompt tokens handed to SAM (128).
    #[serde(default = "d128")]
    pub num_prompts: usize,
    /// Prompt-transformer encoder layers (6).
    #[serde(default = "d6")]
    pub num_layers: usize,
    /// Prompt-transformer attention heads (8).
    #[serde(default = "d8")]
    pub num_heads: usize,
    /// Prompt-transformer feed-forward width (2048).
    #[serde(default = "d2048")]
    pub ffn_dim: usize,
    /// CLIP text context length (77).
    #[serde(default = "d77")]
    pub context_length: usize,
    /// Epsilon of every `nn.LayerNorm` of the head (PyTorch's default 1e-5).
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    /// Side of the square logit frame SSP-SAM predicts in (512: the padded 1024 SAM frame / 2).
    #[serde(default = "d512")]
    pub mask_size: usize,
    /// SAM prompt encoder (the released SAM values).
    #[serde(default)]
    pub prompt_encoder: PromptEncoderConfig,
    /// SAM mask decoder (the released SAM values; SSP-SAM fine-tunes its weights only).
    #[serde(default)]
    pub mask_decoder: MaskDecoderConfig,
}

impl SspSamConfig {
    /// `models/ssp_sam_224.py`: CLIP (Surgery) ViT-B/16 at 224 px, 14×14 patches, 512-d.
    pub fn vit_b16_224() -> Self {
        Self::variant(512, 224, 16)
    }

    /// `models/ssp_sam_336.py`: CLIP (Surgery) ViT-L/14 at 336 px, 24×24 patches, 768-d (the
    /// paper's main-table model).
    pub fn vit_l14_336() -> Self {
        Self::variant(768, 336, 14)
    }

    fn variant(clip_dim: usize, image_size: usize, patch_size: usize) -> Self {
        Self {
            clip_dim,
            image_size,
            patch_size,
            adapter_dim: 512,
            adapter_heads: 8,
            hidden_dim: 256,
            num_prompts: 128,
            num_layers: 6,
            num_heads: 8,
            ffn_dim: 2048,
            context_length: 77,
            layer_norm_eps: 1e-5,
            mask_size: 512,
            prompt_encoder: PromptEncoderConfig::default(),
            mask_decoder: MaskDecoderConfig::default(),
        }
    }

    /// The preset for a CLIP canvas side: 224 → [`Self::vit_b16_224`], 336 →
    /// [`Self::vit_l14_336`]; `None` for anything else.
    pub fn for_image_size(image_size: usize) -> Option<Self> {
        match image_size {
            224 => Some(Self::vit_b16_224()),
            336 => Some(Self::vit_l14_336()),
            _ => None,
        }
    }

    /// Side `P` of the CLIP patch grid (14 or 24).
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size.max(1)
    }

    /// Length of the prompt-transformer sequence: box token, prompt tokens, `P²` patches
    /// (325 or 705 rows of `vl_pos_embed`).
    pub fn sequence_len(&self) -> usize {
        1 + self.num_prompts + self.grid() * self.grid()
    }
}

impl Default for SspSamConfig {
    fn default() -> Self {
        Self::vit_l14_336()
    }
}
