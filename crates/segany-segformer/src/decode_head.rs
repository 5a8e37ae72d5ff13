//! The all-MLP decode head (`decode_head.*`): each stage projected to `decoder_hidden_size`,
//! upsampled bilinearly (`align_corners=False`) to the stride-4 map, concatenated
//! (deepest first), fused by a 1×1 conv + BatchNorm + ReLU and classified by a 1×1 conv.

use crate::attention::map_to_tokens;
use crate::Config;
use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::{
    batch_norm, conv2d, conv2d_no_bias, linear, BatchNorm, Conv2d, Linear, VarBuilder,
};
use segany_core::nn::resize_bilinear;

/// PyTorch's `nn.BatchNorm2d` default epsilon (transformers does not pass one).
const TORCH_BN_EPS: f64 = 1e-5;

/// SegFormer's decode head (`SegformerDecodeHead`).
#[derive(Debug, Clone)]
pub struct DecodeHead {
    linear_c: Vec<Linear>,
    linear_fuse: Conv2d,
    batch_norm: BatchNorm,
    classifier: Conv2d,
}

impl DecodeHead {
    /// `vb` points at `decode_head`.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let d = cfg.decoder_hidden_size;
        let linear_c = (0..cfg.num_encoder_blocks)
            .map(|i| linear(cfg.hidden_sizes[i], d, vb.pp(format!("linear_c.{i}.proj"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            linear_c,
            linear_fuse: conv2d_no_bias(
                d * cfg.num_encoder_blocks,
                d,
                1,
                Default::default(),
                vb.pp("linear_fuse"),
            )?,
            batch_norm: batch_norm(d, TORCH_BN_EPS, vb.pp("batch_norm"))?,
            classifier: conv2d(
                d,
                cfg.num_labels(),
                1,
                Default::default(),
                vb.pp("classifier"),
            )?,
        })
    }

    /// Stage maps (finest first) → logits `(B, num_labels, H/4, W/4)` at the finest map's size.
    pub fn forward(&self, stages: &[Tensor]) -> Result<Tensor> {
        if stages.len() != self.linear_c.len() || stages.is_empty() {
            candle_core::bail!(
                "decode head: {} feature maps for {} projections",
                stages.len(),
                self.linear_c.len()
            );
        }
        let (_, _, h0, w0) = stages[0].dims4()?;
        let mut maps = Vec::with_capacity(stages.len());
        for (x, proj) in stages.iter().zip(&self.linear_c).rev() {
            let (b, _, h, w) = x.dims4()?;
            let t = proj.forward(&map_to_tokens(x)?)?;
            let d = t.dim(2)?;
            let m = t.transpose(1, 2)?.reshape((b, d, h, w))?;
            maps.push(resize_bilinear(&m, h0, w0)?);
        }
        let x = self.linear_fuse.forward(&Tensor::cat(&maps, 1)?)?;
        let x = self.batch_norm.forward_t(&x, false)?.relu()?;
        self.classifier.forward(&x)
    }
}
