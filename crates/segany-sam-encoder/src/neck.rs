//! SAM's encoder neck (`image_encoder.neck`), shared by the ViT and TinyViT encoders.

use crate::dense_conv::DenseConv;
use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};
use segany_core::nn::{is_cpu_f32, layer_norm_2d, LayerNorm2d};

/// `Conv1×1 → LayerNorm2d → Conv3×3 → LayerNorm2d`, no biases, eps 1e-6: `(B, C_in, g, g)` →
/// `(B, C_out, g, g)`. Keys `neck.0` … `neck.3`.
#[derive(Debug, Clone)]
pub struct Neck {
    conv1: Conv2d,
    ln1: LayerNorm2d,
    conv2: Conv2d,
    ln2: LayerNorm2d,
    /// Host copies of the two convolutions for the CPU kernel (f32 weights on the CPU).
    dense: Option<(DenseConv, DenseConv)>,
}

impl Neck {
    /// Loads the neck from `vb` (the encoder's `vb.pp("neck")`).
    pub fn new(in_channels: usize, out_channels: usize, vb: VarBuilder) -> Result<Self> {
        let (i, o) = (in_channels, out_channels);
        let conv3 = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let conv1 = candle_nn::conv2d_no_bias(i, o, 1, Default::default(), vb.pp("0"))?;
        let conv2 = candle_nn::conv2d_no_bias(o, o, 3, conv3, vb.pp("2"))?;
        let w = conv1.weight();
        let dense = if is_cpu_f32(w) {
            Some((
                DenseConv::new(w, None, 1, 0)?,
                DenseConv::new(conv2.weight(), None, 1, 1)?,
            ))
        } else {
            None
        };
        Ok(Self {
            conv1,
            ln1: layer_norm_2d(o, 1e-6, vb.pp("1"))?,
            conv2,
            ln2: layer_norm_2d(o, 1e-6, vb.pp("3"))?,
            dense,
        })
    }
}

impl Module for Neck {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let (Some((c1, c2)), true) = (&self.dense, is_cpu_f32(x)) {
            let y = self.ln1.forward(&c1.forward(x, false)?)?;
            return self.ln2.forward(&c2.forward(&y, false)?);
        }
        x.contiguous()?
            .apply(&self.conv1)?
            .apply(&self.ln1)?
            .apply(&self.conv2)?
            .apply(&self.ln2)
    }
}
