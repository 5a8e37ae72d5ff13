//! TinyViT configuration: the constructor arguments of MobileSAM's `TinyViT`, with the
//! TinyViT-5M preset `build_sam_vit_t` uses.

use serde::{Deserialize, Serialize};

fn d_image() -> usize {
    1024
}
fn d_channels() -> usize {
    3
}
fn d_embed_dims() -> Vec<usize> {
    vec![64, 128, 160, 320]
}
fn d_depths() -> Vec<usize> {
    vec![2, 2, 6, 2]
}
fn d_heads() -> Vec<usize> {
    vec![2, 4, 5, 10]
}
fn d_windows() -> Vec<usize> {
    vec![7, 7, 14, 7]
}
fn d_ratio() -> f64 {
    4.0
}
fn d_local_conv() -> usize {
    3
}
fn d_out() -> usize {
    256
}
fn d_ln_eps() -> f64 {
    1e-5
}
fn d_bn_eps() -> f64 {
    1e-5
}

/// Configuration of MobileSAM's TinyViT image encoder (`mobile_sam/modeling/tiny_vit_sam.py`).
///
/// Stage 0 is a stack of MBConv blocks; stages 1.. are TinyViT blocks (window attention with
/// learned attention biases, a depthwise local convolution, an MLP). Every stage but the last
/// ends with a patch merging whose depthwise convolution has stride 2, except when the next
/// stage is 320, 448 or 576 wide, where MobileSAM uses stride 1 (a rule of the reference code,
/// kept as is). The neck maps the last stage to `output_channels`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TinyViTConfig {
    /// Input side length (images are resized and padded to this square).
    #[serde(default = "d_image")]
    pub image_size: usize,
    /// Input channels.
    #[serde(default = "d_channels")]
    pub num_channels: usize,
    /// Width of each stage.
    #[serde(default = "d_embed_dims")]
    pub embed_dims: Vec<usize>,
    /// Blocks per stage.
    #[serde(default = "d_depths")]
    pub depths: Vec<usize>,
    /// Attention heads per stage (stage 0, convolutional, ignores its entry).
    #[serde(default = "d_heads")]
    pub num_heads: Vec<usize>,
    /// Attention window side per stage (stage 0 ignores its entry).
    #[serde(default = "d_windows")]
    pub window_sizes: Vec<usize>,
    /// MLP expansion ratio of the TinyViT blocks.
    #[serde(default = "d_ratio")]
    pub mlp_ratio: f64,
    /// Expansion ratio of the MBConv blocks.
    #[serde(default = "d_ratio")]
    pub mbconv_expand_ratio: f64,
    /// Kernel side of the depthwise convolution between attention and MLP.
    #[serde(default = "d_local_conv")]
    pub local_conv_size: usize,
    /// Channels of the output embedding (the neck's width).
    #[serde(default = "d_out")]
    pub output_channels: usize,
    /// LayerNorm epsilon of attention and MLP (`nn.LayerNorm`'s default).
    #[serde(default = "d_ln_eps")]
    pub layer_norm_eps: f64,
    /// BatchNorm epsilon (`nn.BatchNorm2d`'s default).
    #[serde(default = "d_bn_eps")]
    pub batch_norm_eps: f64,
}

impl Default for TinyViTConfig {
    fn default() -> Self {
        Self::tiny_vit_5m()
    }
}

impl TinyViTConfig {
    /// TinyViT-5M at 1024², MobileSAM's encoder (`sam_model_registry["vit_t"]`, `mobile_sam.pt`).
    pub fn tiny_vit_5m() -> Self {
        Self {
            image_size: d_image(),
            num_channels: d_channels(),
            embed_dims: d_embed_dims(),
            depths: d_depths(),
            num_heads: d_heads(),
            window_sizes: d_windows(),
            mlp_ratio: d_ratio(),
            mbconv_expand_ratio: d_ratio(),
            local_conv_size: d_local_conv(),
            output_channels: d_out(),
            layer_norm_eps: d_ln_eps(),
            batch_norm_eps: d_bn_eps(),
        }
    }

    /// Number of stages.
    pub fn num_stages(&self) -> usize {
        self.embed_dims.len()
    }

    /// Stride of the patch merging that ends stage `i` and leads into a stage `out_dim` wide:
    /// 1 for widths 320, 448 and 576 (MobileSAM's `PatchMerging`), else 2.
    pub fn merge_stride(out_dim: usize) -> usize {
        if matches!(out_dim, 320 | 448 | 576) {
            1
        } else {
            2
        }
    }

    /// Side of each stage's token grid for the configured input size.
    pub fn stage_resolutions(&self) -> Vec<usize> {
        // Two 3×3 stride-2 padding-1 convolutions: ceil(n / 2) twice.
        let mut r = self.image_size.div_ceil(2).div_ceil(2);
        let mut out = Vec::with_capacity(self.num_stages());
        for i in 0..self.num_stages() {
            out.push(r);
            if i + 1 < self.num_stages() {
                let s = Self::merge_stride(self.embed_dims[i + 1]);
                r = (r - 1) / s + 1;
            }
        }
        out
    }

    /// Side of the output embedding grid (64 for TinyViT-5M at 1024²).
    pub fn grid_size(&self) -> usize {
        self.stage_resolutions().last().copied().unwrap_or(0)
    }

    /// Checks that the per-stage lists agree and every width divides into its heads.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.num_stages();
        if n < 2 {
            return Err(format!(
                "TinyViT needs at least 2 stages (a convolutional one and an attention one), got {n}"
            ));
        }
        for (name, len) in [
            ("depths", self.depths.len()),
            ("num_heads", self.num_heads.len()),
            ("window_sizes", self.window_sizes.len()),
        ] {
            if len != n {
                return Err(format!(
                    "TinyViT {name} has {len} entries but embed_dims has {n}"
                ));
            }
        }
        if self.image_size == 0 || self.embed_dims[0] < 2 {
            return Err(format!(
                "TinyViT image_size {} / first width {} too small",
                self.image_size, self.embed_dims[0]
            ));
        }
        for i in 1..n {
            let (d, h, w) = (self.embed_dims[i], self.num_heads[i], self.window_sizes[i]);
            if h == 0 || d % h != 0 {
                return Err(format!(
                    "TinyViT stage {i}: width {d} is not divisible by {h} heads"
                ));
            }
            if w == 0 {
                return Err(format!("TinyViT stage {i}: window size 0"));
            }
        }
        if self.local_conv_size.is_multiple_of(2) {
            return Err(format!(
                "TinyViT local_conv_size {} must be odd",
                self.local_conv_size
            ));
        }
        Ok(())
    }
}

/// `int(dim * ratio)` as the reference computes hidden widths, tolerant of a ratio inferred as
/// `hidden / dim` (which may land a hair below the integer).
pub(crate) fn scaled(dim: usize, ratio: f64) -> usize {
    (dim as f64 * ratio + 1e-6).floor() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_vit_5m_grid_is_64() {
        let c = TinyViTConfig::tiny_vit_5m();
        assert_eq!(c.stage_resolutions(), vec![256, 128, 64, 64]);
        assert_eq!(c.grid_size(), 64);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validate_names_the_fault() {
        let mut c = TinyViTConfig::tiny_vit_5m();
        c.num_heads[2] = 3;
        assert!(c.validate().unwrap_err().contains("160"));
        c = TinyViTConfig::tiny_vit_5m();
        c.depths.pop();
        assert!(c.validate().unwrap_err().contains("depths"));
    }
}
