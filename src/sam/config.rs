//! `SamConfig`: the three sub-configurations, read from transformers' `config.json`, taken from
//! a preset, or inferred from a bare checkpoint's tensor shapes.

use segany_core::{Error, Result, TensorStore};
use segany_sam_decoder::{MaskDecoderConfig, PromptEncoderConfig};
use segany_sam_encoder::{ImageEncoderConfig, TinyViTConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Which image encoder a SAM model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderKind {
    /// SAM's ViT-B/L/H ([`SamConfig::vision_config`]).
    ViT,
    /// MobileSAM's TinyViT ([`SamConfig::tiny_vit_config`]).
    TinyViT,
}

/// Configuration of a whole SAM model (transformers' `SamConfig` layout, plus an optional
/// MobileSAM TinyViT encoder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SamConfig {
    /// Image encoder (ViT). With [`SamConfig::tiny_vit_config`] set, only its geometry
    /// (`image_size`, `patch_size` = the encoder's total stride, `num_channels`,
    /// `output_channels`) is used: the embedding grid the prompt encoder and decoder see.
    #[serde(default)]
    pub vision_config: ImageEncoderConfig,
    /// MobileSAM's TinyViT image encoder; when present it replaces the ViT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiny_vit_config: Option<TinyViTConfig>,
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

    /// MobileSAM (`sam_model_registry["vit_t"]`): TinyViT-5M encoder, SAM's prompt encoder
    /// and mask decoder.
    pub fn vit_t() -> Self {
        Self::with_tiny_vit(TinyViTConfig::tiny_vit_5m())
    }

    /// A SAM model with the given TinyViT encoder and the standard prompt encoder and mask
    /// decoder; `vision_config` is set to the encoder's geometry.
    pub fn with_tiny_vit(tiny: TinyViTConfig) -> Self {
        Self {
            vision_config: tiny_vit_geometry(&tiny),
            tiny_vit_config: Some(tiny),
            ..Default::default()
        }
    }

    /// The image encoder this configuration builds.
    pub fn encoder_kind(&self) -> EncoderKind {
        if self.tiny_vit_config.is_some() {
            EncoderKind::TinyViT
        } else {
            EncoderKind::ViT
        }
    }

    /// A preset by name: `vit_b`, `vit_l`, `vit_h`, `vit_t` (also `b`, `base`, `sam-vit-base`,
    /// `mobile_sam`, `tiny`, ...).
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
            "vit_t" | "t" | "tiny" | "vit_tiny" | "mobile_sam" | "mobilesam" => Ok(Self::vit_t()),
            _ => Err(Error::InvalidArgument(format!(
                "unknown SAM preset {name:?} (vit_b, vit_l, vit_h, vit_t)"
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
        if let Some(t) = &self.tiny_vit_config {
            t.validate()?;
            let (g, v) = (tiny_vit_geometry(t), &self.vision_config);
            if (
                g.image_size,
                g.grid_size(),
                g.num_channels,
                g.output_channels,
            ) != (
                v.image_size,
                v.grid_size(),
                v.num_channels,
                v.output_channels,
            ) {
                return Err(format!(
                    "TinyViT geometry (input {}, grid {}, {} → {} channels) differs from vision_config's (input {}, grid {}, {} → {} channels)",
                    g.image_size, g.grid_size(), g.num_channels, g.output_channels,
                    v.image_size, v.grid_size(), v.num_channels, v.output_channels
                ));
            }
        }
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
    /// needed for a bare safetensors file without `config.json`. A TinyViT encoder (MobileSAM,
    /// `image_encoder.patch_embed.seq.*`) is recognised and inferred too.
    ///
    /// Everything is read from shapes except the mask decoder's attention heads, which no
    /// shape reveals: 8, as in every released SAM. Image-encoder heads come from the
    /// relative-position tables' width; window and global blocks from their tables' lengths.
    pub fn infer_from_tensors(store: &TensorStore) -> Result<Self> {
        let shape = |k: &str| shape_of(store, k);
        let count = |prefix: &str, suffix: &str| count_of(store, prefix, suffix);
        let (vision_config, tiny_vit_config) = if store.contains(TINY_VIT_STEM) {
            let t = infer_tiny_vit(store)?;
            (tiny_vit_geometry(&t), Some(t))
        } else {
            (infer_vit(store)?, None)
        };
        let grid = vision_config.grid_size();
        let patch = vision_config.patch_size;
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
            tiny_vit_config,
            prompt_encoder_config,
            mask_decoder_config,
        };
        cfg.validate().map_err(bad)?;
        Ok(cfg)
    }

    /// The preset name this configuration equals, if any (`vit_b`, `vit_l`, `vit_h`, `vit_t`).
    pub fn preset_name(&self) -> Option<&'static str> {
        if let Some(t) = &self.tiny_vit_config {
            // Stage 0 is convolutional: its head and window entries mean nothing.
            let strip = |c: &TinyViTConfig| {
                let mut c = c.clone();
                c.num_heads.iter_mut().take(1).for_each(|h| *h = 0);
                c.window_sizes.iter_mut().take(1).for_each(|w| *w = 0);
                c
            };
            return (strip(t) == strip(&TinyViTConfig::tiny_vit_5m())).then_some("vit_t");
        }
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

/// The stem convolution only TinyViT checkpoints hold.
const TINY_VIT_STEM: &str = "image_encoder.patch_embed.seq.0.c.weight";

fn shape_of(store: &TensorStore, k: &str) -> Result<Vec<usize>> {
    store
        .shape(k)
        .map(|s| s.to_vec())
        .ok_or_else(|| Error::MissingTensors(vec![k.to_string()]))
}

fn count_of(store: &TensorStore, prefix: &str, suffix: &str) -> usize {
    (0..)
        .take_while(|i| store.contains(&format!("{prefix}{i}{suffix}")))
        .count()
}

fn bad(reason: String) -> Error {
    Error::Config { path: None, reason }
}

/// The ViT image encoder's configuration from its tensor shapes.
fn infer_vit(store: &TensorStore) -> Result<ImageEncoderConfig> {
    let shape = |k: &str| shape_of(store, k);
    let count = |prefix: &str, suffix: &str| count_of(store, prefix, suffix);
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
    Ok(ImageEncoderConfig {
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
    })
}

/// The ViT-config view of a TinyViT encoder's geometry (input size, total stride, channels),
/// which is all the prompt encoder, the decoder and the predictor read from `vision_config`.
fn tiny_vit_geometry(t: &TinyViTConfig) -> ImageEncoderConfig {
    let grid = t.grid_size().max(1);
    ImageEncoderConfig {
        hidden_size: t.embed_dims.last().copied().unwrap_or(0),
        num_hidden_layers: 0,
        num_attention_heads: 1,
        mlp_dim: None,
        global_attn_indexes: vec![],
        image_size: t.image_size,
        patch_size: t.image_size / grid,
        num_channels: t.num_channels,
        output_channels: t.output_channels,
        window_size: 0,
        ..ImageEncoderConfig::vit_b()
    }
}

/// MobileSAM's TinyViT configuration from its tensor shapes: widths from the merging and
/// block tensors, depths by counting blocks, heads and windows from `attention_biases`
/// (`heads × window²`), ratios from the MLP / MBConv widths. The input size is not stored
/// in any shape: 1024, as in MobileSAM.
fn infer_tiny_vit(store: &TensorStore) -> Result<TinyViTConfig> {
    let shape = |k: &str| shape_of(store, k);
    let p = "image_encoder";
    let stem = shape(TINY_VIT_STEM)?;
    let keys = store.keys();
    let stages = (0..)
        .take_while(|i| {
            let prefix = format!("{p}.layers.{i}.");
            keys.iter().any(|k| k.starts_with(&prefix))
        })
        .count();
    if stages < 2 {
        return Err(bad(format!(
            "TinyViT checkpoint has {stages} stage(s) under {p}.layers.*; at least 2 are needed"
        )));
    }
    let mut cfg = TinyViTConfig {
        num_channels: stem[1],
        embed_dims: Vec::with_capacity(stages),
        depths: Vec::with_capacity(stages),
        num_heads: Vec::with_capacity(stages),
        window_sizes: Vec::with_capacity(stages),
        output_channels: shape(&format!("{p}.neck.0.weight"))?[0],
        ..TinyViTConfig::tiny_vit_5m()
    };
    for i in 0..stages {
        let l = format!("{p}.layers.{i}");
        let dim = if i == 0 {
            shape(&format!("{p}.patch_embed.seq.2.c.weight"))?[0]
        } else {
            shape(&format!("{p}.layers.{}.downsample.conv1.c.weight", i - 1))?[0]
        };
        cfg.embed_dims.push(dim);
        if i == 0 {
            cfg.depths
                .push(count_of(store, &format!("{l}.blocks."), ".conv1.c.weight"));
            cfg.num_heads.push(1);
            cfg.window_sizes.push(1);
            if cfg.depths[0] > 0 {
                let hidden = shape(&format!("{l}.blocks.0.conv1.c.weight"))?[0];
                cfg.mbconv_expand_ratio = hidden as f64 / dim as f64;
            }
            continue;
        }
        let depth = count_of(store, &format!("{l}.blocks."), ".attn.qkv.weight");
        if depth == 0 {
            return Err(Error::MissingTensors(vec![format!(
                "{l}.blocks.0.attn.attention_biases"
            )]));
        }
        cfg.depths.push(depth);
        let ab = shape(&format!("{l}.blocks.0.attn.attention_biases"))?;
        let window = (ab[1] as f64).sqrt().round() as usize;
        if ab.len() != 2 || window * window != ab[1] {
            return Err(bad(format!(
                "{l}.blocks.0.attn.attention_biases has shape {ab:?}: not heads × window²"
            )));
        }
        cfg.num_heads.push(ab[0]);
        cfg.window_sizes.push(window);
        let hidden = shape(&format!("{l}.blocks.0.mlp.fc1.weight"))?[0];
        cfg.mlp_ratio = hidden as f64 / dim as f64;
        cfg.local_conv_size = shape(&format!("{l}.blocks.0.local_conv.c.weight"))?[2];
    }
    cfg.validate().map_err(bad)?;
    Ok(cfg)
}
