//! `SegformerConfig` as transformers writes it to `config.json`, with the published presets.

use candle_nn::Activation;
use serde::Deserialize;
use std::collections::BTreeMap;

fn d_num_channels() -> usize {
    3
}
fn d_num_encoder_blocks() -> usize {
    4
}
fn d_depths() -> Vec<usize> {
    vec![2, 2, 2, 2]
}
fn d_sr_ratios() -> Vec<usize> {
    vec![8, 4, 2, 1]
}
fn d_hidden_sizes() -> Vec<usize> {
    vec![32, 64, 160, 256]
}
fn d_patch_sizes() -> Vec<usize> {
    vec![7, 3, 3, 3]
}
fn d_strides() -> Vec<usize> {
    vec![4, 2, 2, 2]
}
fn d_num_attention_heads() -> Vec<usize> {
    vec![1, 2, 5, 8]
}
fn d_mlp_ratios() -> Vec<usize> {
    vec![4, 4, 4, 4]
}
fn d_hidden_act() -> Activation {
    Activation::Gelu
}
fn d_layer_norm_eps() -> f64 {
    1e-6
}
fn d_decoder_hidden_size() -> usize {
    256
}
fn d_true() -> bool {
    true
}

/// SegFormer configuration (transformers' `SegformerConfig`); every field defaults to the
/// transformers default, so a partial `config.json` deserialises as transformers reads it.
///
/// The number of classes is `id2label.len()` (transformers stores no `num_labels`); an absent
/// `id2label` means transformers' default of 2 labels.
///
/// `layer_norm_eps` is kept for completeness but, as in transformers, does **not** reach the
/// model: every LayerNorm and the decode head's BatchNorm use PyTorch's default `1e-5`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Class names by id (`"0"`, `"1"`, ...).
    #[serde(default)]
    pub id2label: BTreeMap<String, String>,
    /// Input channels.
    #[serde(default = "d_num_channels")]
    pub num_channels: usize,
    /// Stages of the Mix Transformer encoder.
    #[serde(default = "d_num_encoder_blocks")]
    pub num_encoder_blocks: usize,
    /// Layers per stage.
    #[serde(default = "d_depths")]
    pub depths: Vec<usize>,
    /// Key/value spatial reduction ratio per stage.
    #[serde(default = "d_sr_ratios")]
    pub sr_ratios: Vec<usize>,
    /// Channels per stage.
    #[serde(default = "d_hidden_sizes")]
    pub hidden_sizes: Vec<usize>,
    /// Overlapping patch-embedding kernel per stage.
    #[serde(default = "d_patch_sizes")]
    pub patch_sizes: Vec<usize>,
    /// Patch-embedding stride per stage.
    #[serde(default = "d_strides")]
    pub strides: Vec<usize>,
    /// Attention heads per stage.
    #[serde(default = "d_num_attention_heads")]
    pub num_attention_heads: Vec<usize>,
    /// Mix-FFN expansion per stage.
    #[serde(default = "d_mlp_ratios")]
    pub mlp_ratios: Vec<usize>,
    /// Mix-FFN activation (`"gelu"` is the exact erf GELU, as transformers' `ACT2FN`).
    #[serde(default = "d_hidden_act")]
    pub hidden_act: Activation,
    /// Stored by transformers but unused by its model (see the type's documentation).
    #[serde(default = "d_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Channels of the all-MLP decode head.
    #[serde(default = "d_decoder_hidden_size")]
    pub decoder_hidden_size: usize,
    /// Whether the last stage is reshaped to `(B, C, H, W)` (always true for segmentation).
    #[serde(default = "d_true")]
    pub reshape_last_stage: bool,
}

impl Default for Config {
    /// transformers' `SegformerConfig()` (MiT-b0 sizes, no labels).
    fn default() -> Self {
        Config {
            id2label: BTreeMap::new(),
            num_channels: d_num_channels(),
            num_encoder_blocks: d_num_encoder_blocks(),
            depths: d_depths(),
            sr_ratios: d_sr_ratios(),
            hidden_sizes: d_hidden_sizes(),
            patch_sizes: d_patch_sizes(),
            strides: d_strides(),
            num_attention_heads: d_num_attention_heads(),
            mlp_ratios: d_mlp_ratios(),
            hidden_act: d_hidden_act(),
            layer_norm_eps: d_layer_norm_eps(),
            decoder_hidden_size: d_decoder_hidden_size(),
            reshape_last_stage: true,
        }
    }
}

/// MiT encoder size (`mit-b0` … `mit-b5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// 3.7 M-parameter encoder, 256-channel decoder.
    B0,
    /// 256-channel decoder.
    B1,
    /// 768-channel decoder (and so on).
    B2,
    /// MiT-B3.
    B3,
    /// MiT-B4.
    B4,
    /// MiT-B5.
    B5,
}

/// The dataset a checkpoint was fine-tuned on, fixing its classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    /// ADE20K, 150 classes ([`crate::ADE20K_CLASSES`]).
    Ade20k,
    /// Cityscapes, 19 train ids ([`crate::CITYSCAPES_CLASSES`]).
    Cityscapes,
}

impl Dataset {
    /// The class names in SSA's spelling (`scripts/configs/*_id2label.py`).
    pub fn class_names(self) -> &'static [&'static str] {
        match self {
            Dataset::Ade20k => &crate::ADE20K_CLASSES,
            Dataset::Cityscapes => &crate::CITYSCAPES_CLASSES,
        }
    }

    /// The colour of each class in the semantic PNG.
    pub fn palette(self) -> &'static [[u8; 3]] {
        match self {
            Dataset::Ade20k => &crate::ADE20K_PALETTE,
            Dataset::Cityscapes => &crate::CITYSCAPES_PALETTE,
        }
    }
}

impl std::str::FromStr for Dataset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ade20k" | "ade" => Ok(Dataset::Ade20k),
            "cityscapes" => Ok(Dataset::Cityscapes),
            other => Err(format!("dataset {other:?}: expected ade20k or cityscapes")),
        }
    }
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::B0 => "b0",
            Variant::B1 => "b1",
            Variant::B2 => "b2",
            Variant::B3 => "b3",
            Variant::B4 => "b4",
            Variant::B5 => "b5",
        }
    }
}

impl Config {
    /// The configuration of NVIDIA's fine-tuned checkpoint (`nvidia/segformer-bX-finetuned-…`):
    /// MiT sizes from the MiT paper / the published `config.json` files (depths b0 `[2,2,2,2]`,
    /// b1 `[2,2,2,2]`, b2 `[3,4,6,3]`, b3 `[3,4,18,3]`, b4 `[3,8,27,3]`, b5 `[3,6,40,3]`; widths
    /// `[32,64,160,256]` for b0 and `[64,128,320,512]` otherwise; decoder 256 for b0/b1, 768
    /// otherwise), everything else at the transformers defaults, and the dataset's class names.
    pub fn preset(variant: Variant, dataset: Dataset) -> Self {
        let (depths, hidden_sizes, decoder) = match variant {
            Variant::B0 => (vec![2, 2, 2, 2], vec![32, 64, 160, 256], 256),
            Variant::B1 => (vec![2, 2, 2, 2], vec![64, 128, 320, 512], 256),
            Variant::B2 => (vec![3, 4, 6, 3], vec![64, 128, 320, 512], 768),
            Variant::B3 => (vec![3, 4, 18, 3], vec![64, 128, 320, 512], 768),
            Variant::B4 => (vec![3, 8, 27, 3], vec![64, 128, 320, 512], 768),
            Variant::B5 => (vec![3, 6, 40, 3], vec![64, 128, 320, 512], 768),
        };
        let id2label = dataset
            .class_names()
            .iter()
            .enumerate()
            .map(|(i, n)| (i.to_string(), n.to_string()))
            .collect();
        Config {
            id2label,
            depths,
            hidden_sizes,
            decoder_hidden_size: decoder,
            ..Config::default()
        }
    }

    /// The hub repository of the preset and the square input size its image processor uses:
    /// ADE20K checkpoints are `-ade-512-512` except b5 (`-ade-640-640`, SSA's default);
    /// Cityscapes ones are `-cityscapes-1024-1024` (SSA's default is b5).
    pub fn preset_hub_id(variant: Variant, dataset: Dataset) -> (String, usize) {
        let v = variant.name();
        match (dataset, variant) {
            (Dataset::Ade20k, Variant::B5) => {
                (format!("nvidia/segformer-{v}-finetuned-ade-640-640"), 640)
            }
            (Dataset::Ade20k, _) => (format!("nvidia/segformer-{v}-finetuned-ade-512-512"), 512),
            (Dataset::Cityscapes, _) => (
                format!("nvidia/segformer-{v}-finetuned-cityscapes-1024-1024"),
                1024,
            ),
        }
    }

    /// Number of classes (`len(id2label)`, 2 when absent as in transformers).
    pub fn num_labels(&self) -> usize {
        if self.id2label.is_empty() {
            2
        } else {
            self.id2label.len()
        }
    }

    /// Checks that the per-stage lists have `num_encoder_blocks` entries and the sizes are
    /// usable; the message names the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.num_encoder_blocks;
        if n == 0 {
            return Err("num_encoder_blocks must be > 0".into());
        }
        let lists = [
            ("depths", &self.depths),
            ("sr_ratios", &self.sr_ratios),
            ("hidden_sizes", &self.hidden_sizes),
            ("patch_sizes", &self.patch_sizes),
            ("strides", &self.strides),
            ("num_attention_heads", &self.num_attention_heads),
            ("mlp_ratios", &self.mlp_ratios),
        ];
        for (name, v) in lists {
            if v.len() < n {
                return Err(format!(
                    "{name} has {} entries, num_encoder_blocks = {n}",
                    v.len()
                ));
            }
        }
        for i in 0..n {
            let (h, heads) = (self.hidden_sizes[i], self.num_attention_heads[i]);
            if heads == 0 || h % heads != 0 {
                return Err(format!(
                    "hidden_sizes[{i}] = {h} is not a multiple of num_attention_heads[{i}] = {heads}"
                ));
            }
            if self.strides[i] == 0 || self.sr_ratios[i] == 0 || self.patch_sizes[i] == 0 {
                return Err(format!(
                    "stage {i}: strides, sr_ratios and patch_sizes must be > 0"
                ));
            }
        }
        for k in self.id2label.keys() {
            if k.parse::<usize>()
                .map_or(true, |i| i >= self.id2label.len())
            {
                return Err(format!(
                    "id2label key {k:?} is not an id in 0..{}",
                    self.id2label.len()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_style_config_deserialises() {
        // Field set of the nvidia/segformer-* config.json files (unknown fields are ignored).
        let json = r#"{"architectures": ["SegformerForSemanticSegmentation"],
            "attention_probs_dropout_prob": 0.0, "classifier_dropout_prob": 0.1,
            "decoder_hidden_size": 768, "depths": [3, 6, 40, 3], "downsampling_rates": [1, 4, 8, 16],
            "drop_path_rate": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
            "hidden_sizes": [64, 128, 320, 512], "id2label": {"0": "road", "1": "sidewalk"},
            "image_size": 224, "initializer_range": 0.02, "layer_norm_eps": 1e-06,
            "mlp_ratios": [4, 4, 4, 4], "model_type": "segformer", "num_attention_heads": [1, 2, 5, 8],
            "num_channels": 3, "num_encoder_blocks": 4, "patch_sizes": [7, 3, 3, 3],
            "reshape_last_stage": true, "semantic_loss_ignore_index": 255,
            "sr_ratios": [8, 4, 2, 1], "strides": [4, 2, 2, 2], "torch_dtype": "float32"}"#;
        let c: Config = serde_json::from_str(json).unwrap();
        assert_eq!(c.depths, vec![3, 6, 40, 3]);
        assert_eq!(c.num_labels(), 2);
        assert_eq!(c.hidden_act, Activation::Gelu);
        c.validate().unwrap();
        // An empty object is transformers' default config (MiT-b0, 2 labels).
        let d: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(d, Config::default());
        assert_eq!(d.num_labels(), 2);
    }

    #[test]
    fn presets() {
        let b5 = Config::preset(Variant::B5, Dataset::Ade20k);
        assert_eq!(
            (b5.depths.clone(), b5.decoder_hidden_size),
            (vec![3, 6, 40, 3], 768)
        );
        assert_eq!(b5.num_labels(), 150);
        assert_eq!(b5.id2label["7"], "bed ");
        let b0 = Config::preset(Variant::B0, Dataset::Cityscapes);
        assert_eq!(
            (b0.hidden_sizes.clone(), b0.decoder_hidden_size),
            (vec![32, 64, 160, 256], 256)
        );
        assert_eq!(b0.num_labels(), 19);
        assert_eq!(
            Config::preset_hub_id(Variant::B5, Dataset::Ade20k),
            ("nvidia/segformer-b5-finetuned-ade-640-640".to_string(), 640)
        );
        assert_eq!(
            Config::preset_hub_id(Variant::B2, Dataset::Cityscapes).0,
            "nvidia/segformer-b2-finetuned-cityscapes-1024-1024"
        );
        assert_eq!("cityscapes".parse::<Dataset>(), Ok(Dataset::Cityscapes));
        assert!("coco".parse::<Dataset>().is_err());
        assert_eq!(Dataset::Ade20k.palette().len(), 150);
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = Config::default();
        c.depths.pop();
        assert!(c.validate().unwrap_err().contains("depths"));
        let mut c = Config::default();
        c.num_attention_heads[2] = 3;
        assert!(c.validate().unwrap_err().contains("num_attention_heads[2]"));
        let mut c = Config::default();
        c.id2label.insert("5".into(), "x".into());
        assert!(c.validate().unwrap_err().contains("\"5\""));
    }
}
