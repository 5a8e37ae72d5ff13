//! SAM's encoder neck (`image_encoder.neck`), shared by the ViT and TinyViT encoders.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};
use segany_core::nn::{layer_norm_2d, LayerNorm2d};

/// `Conv1×1 → LayerNorm2d → Conv3×3 → LayerNorm2d`, no biases, eps 1e-6: `(B, C_in, g, g)` →
/// `(B, C_out, g, g)`. Keys `neck.0` … `neck.3`.
#[derive(Debug, Clone)]
pub struct Neck {
    conv1: Conv2d,
    ln1: LayerNorm2d,
    conv2: Conv2d,
    ln2: LayerNorm2d,
}

impl Neck {
    /// Loads the neck from `vb` (the encoder's `vb.pp("neck")`).
    pub fn new(in_channels: usize, out_channels: usize, vb: VarBuilder) -> Result<Self> {
        let (i, o) = (in_channels, out_channels);
        let conv3 = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        Ok(Self {
            conv1: candle_nn::conv2d_no_bias(i, o, 1, Default::default(), vb.pp("0"))?,
            ln1: layer_norm_2d(o, 1e-6, vb.pp("1"))?,
            conv2: candle_nn::conv2d_no_bias(o, o, 3, conv3, vb.pp("2"))?,
            ln2: layer_norm_2d(o, 1e-6, vb.pp("3"))?,
        })
    }
}

impl Module for Neck {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?
            .apply(&self.conv1)?
            .apply(&self.ln1)?
            .apply(&self.conv2)?
            .apply(&self.ln2)
    }
}
