//! `SamConfig`: the three sub-configurations, read from transformers' `config.json`, taken from
//! a preset, or inferred from a bare checkpoint's tensor shapes.

use segany_core::{Error, Result, TensorStore};
use segany_sam_decoder::{MaskDecoderConfig, PromptEncoderConfig};
use segany_sam_encoder::ImageEncoderConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Configuration of a whole SAM model (transformers' `SamConfig` layout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SamConfig {
    /// Image encoder.
    #[serde(default)]
    pub vision_config: ImageEncoderConfig,
    /// Prompt encoder.
    #[serde(default)]
    pub prompt_encoder_config: PromptEncoderConfig,
    /// Mask decoder.
    #[serde(default)]
    pub mask_decoder_config: MaskDecoderConfig,
}

impl SamConfig {
    fn with_vision(vision_config: ImageEncoderConfig) -> Self {
        Self {
            vision_config,
            ..Default::default()
        }
    }

    /// SAM ViT-B.
    pub fn vit_b() -> Self {
        Self::with_vision(ImageEncoderConfig::vit_b())
    }

    /// SAM ViT-L.
    pub fn vit_l() -> Self {
        Self::with_vision(ImageEncoderConfig::vit_l())
    }

    /// SAM ViT-H.
    pub fn vit_h() -> Self {
        Self::with_vision(ImageEncoderConfig::vit_h())
    }

    /// A preset by name: `vit_b`, `vit_l`, `vit_h` (also `b`, `base`, `sam-vit-base`, ...).
    pub fn preset(name: &str) -> Result<Self> {
        let n = name.to_ascii_lowercase();
        let n = n
            .trim_start_matches("sam-")
            .trim_start_matches("sam_")
            .replace('-', "_");
        match n.as_str() {
            "vit_b" | "b" | "base" | "vit_base" => Ok(Self::vit_b()),
            "vit_l" | "l" | "large" | "vit_large" => Ok(Self::vit_l()),
            "vit_h" | "h" | "huge" | "vit_huge" => Ok(Self::vit_h()),
            _ => Err(Error::InvalidArgument(format!(
                "unknown SAM preset {name:?} (vit_b, vit_l, vit_h)"
            ))),
        }
    }

    /// Parses transformers' `config.json`.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: Self = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: Some(path.to_path_buf()),
            reason: e.to_string(),
        })?;
        cfg.validate().map_err(|reason| Error::Config {
            path: Some(path.to_path_buf()),
            reason,
        })?;
        Ok(cfg)
    }

    /// Checks that the sub-configurations agree with each other.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.vision_config.validate()?;
        let (v, p, m) = (
            &self.vision_config,
            &self.prompt_encoder_config,
            &self.mask_decoder_config,
        );
        if v.output_channels != p.hidden_size || p.hidden_size != m.hidden_size {
            return Err(format!(
                "widths disagree: encoder output {}, prompt encoder {}, mask decoder {}",
                v.output_channels, p.hidden_size, m.hidden_size
            ));
        }
        if p.embedding_size() != v.grid_size() {
            return Err(format!(
                "prompt encoder grid {} differs from image encoder grid {}",
                p.embedding_size(),
                v.grid_size()
            ));
        }
        Ok(())
    }

    /// Infers the configuration from a checkpoint's tensor shapes (canonical Meta names), as
    /// needed for a bare safetensors file without `config.json`.
    ///
    /// Everything is read from shapes except the mask decoder's attention heads, which no
    /// shape reveals: 8, as in every released SAM. Image-encoder heads come from the
    /// relative-position tables' width; window and global blocks from their tables' lengths.
    pub fn infer_from_tensors(store: &TensorStore) -> Result<Self> {
        let shape = |k: &str| -> Result<Vec<usize>> {
            store
                .shape(k)
                .map(|s| s.to_vec())
                .ok_or_else(|| Error::MissingTensors(vec![k.to_string()]))
        };
        let count = |prefix: &str, suffix: &str| {
            (0..)
                .take_while(|i| store.contains(&format!("{prefix}{i}{suffix}")))
                .count()
        };
        let bad = |reason: String| Error::Config { path: None, reason };

        let pe = shape("image_encoder.patch_embed.proj.weight")?;
        let (hidden, channels, patch) = (pe[0], pe[1], pe[2]);
        let depth = count("image_encoder.blocks.", ".norm1.weight");
        if depth == 0 {
            return Err(Error::MissingTensors(vec![
                "image_encoder.blocks.0.norm1.weight".into(),
            ]));
        }
        let mlp = shape("image_encoder.blocks.0.mlp.lin1.weight")?[0];
        let out = shape("image_encoder.neck.0.weight")?[0];
        let pos = store.shape("image_encoder.pos_embed").map(|s| s.to_vec());
        let grid = match &pos {
            Some(p) if p.len() == 4 => p[1],
            _ => 1024 / patch,
        };
        let use_rel_pos = store.contains("image_encoder.blocks.0.attn.rel_pos_h");
        let (heads, window, globals) = if use_rel_pos {
            let head_dim = shape("image_encoder.blocks.0.attn.rel_pos_h")?[1];
            if head_dim == 0 || hidden % head_dim != 0 {
                return Err(bad(format!(
                    "relative-position width {head_dim} does not divide embedding width {hidden}"
                )));
            }
            let lens = (0..depth)
                .map(|i| shape(&format!("image_encoder.blocks.{i}.attn.rel_pos_h")).map(|s| s[0]))
                .collect::<Result<Vec<_>>>()?;
            let min = lens.iter().copied().min().unwrap_or(0);
            if min + 1 >= 2 * grid {
                (hidden / head_dim, 0, vec![])
            } else {
                let globals = (0..depth).filter(|&i| lens[i] != min).collect();
                (hidden / head_dim, min.div_ceil(2), globals)
            }
        } else {
            let preset = match hidden {
                768 => ImageEncoderConfig::vit_b(),
                1024 => ImageEncoderConfig::vit_l(),
                1280 => ImageEncoderConfig::vit_h(),
                _ => return Err(bad(format!("cannot infer attention heads of a {hidden}-wide encoder without relative positions; provide config.json"))),
            };
            (
                preset.num_attention_heads,
                preset.window_size,
                preset.global_attn_indexes,
            )
        };
        let vision_config = ImageEncoderConfig {
            hidden_size: hidden,
            num_hidden_layers: depth,
            num_attention_heads: heads,
            mlp_dim: Some(mlp),
            mlp_ratio: mlp as f64 / hidden as f64,
            global_attn_indexes: globals,
            image_size: grid * patch,
            patch_size: patch,
            num_channels: channels,
            output_channels: out,
            window_size: window,
            qkv_bias: store.contains("image_encoder.blocks.0.attn.qkv.bias"),
            use_abs_pos: pos.is_some(),
            use_rel_pos,
            layer_norm_eps: 1e-6,
        };
        let d = shape("prompt_encoder.point_embeddings.0.weight")?[1];
        let prompt_encoder_config = PromptEncoderConfig {
            hidden_size: d,
            image_size: grid * patch,
            patch_size: patch,
            mask_input_channels: shape("prompt_encoder.mask_downscaling.3.weight")?[0],
            num_point_embeddings: count("prompt_encoder.point_embeddings.", ".weight"),
        };
        let md = shape("mask_decoder.iou_token.weight")?[1];
        let internal =
            shape("mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight")?[0];
        let mask_decoder_config = MaskDecoderConfig {
            hidden_size: md,
            mlp_dim: shape("mask_decoder.transformer.layers.0.mlp.lin1.weight")?[0],
            num_hidden_layers: count("mask_decoder.transformer.layers.", ".norm1.weight"),
            num_attention_heads: 8,
            attention_downsample_rate: md / internal.max(1),
            num_multimask_outputs: shape("mask_decoder.mask_tokens.weight")?[0].saturating_sub(1),
            iou_head_depth: count("mask_decoder.iou_prediction_head.layers.", ".weight"),
            iou_head_hidden_dim: shape("mask_decoder.iou_prediction_head.layers.0.weight")?[0],
            layer_norm_eps: None,
        };
        let cfg = Self {
            vision_config,
            prompt_encoder_config,
            mask_decoder_config,
        };
        cfg.validate().map_err(bad)?;
        Ok(cfg)
    }

    /// The preset name this configuration equals, if any (`vit_b`, `vit_l`, `vit_h`).
    pub fn preset_name(&self) -> Option<&'static str> {
        [
            ("vit_b", Self::vit_b()),
            ("vit_l", Self::vit_l()),
            ("vit_h", Self::vit_h()),
        ]
        .into_iter()
        .find(|(_, c)| {
            let (a, b) = (&c.vision_config, &self.vision_config);
            a.hidden_size == b.hidden_size
                && a.num_hidden_layers == b.num_hidden_layers
                && a.num_attention_heads == b.num_attention_heads
                && a.global_attn_indexes == b.global_attn_indexes
                && a.image_size == b.image_size
        })
        .map(|(n, _)| n)
    }
}
