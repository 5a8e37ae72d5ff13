//! MobileSAM's TinyViT image encoder (`mobile_sam/modeling/tiny_vit_sam.py`), TinyViT-5M by
//! default.
//!
//! Tensor names follow `mobile_sam.pt` under `image_encoder.` (the same names as candle's
//! `lmz/candle-sam` `mobile_sam-tiny-vitt.safetensors`): `patch_embed.seq.{0,2}.{c,bn}`,
//! `layers.0.blocks.N.conv{1,2,3}`, `layers.I.blocks.N.{attn.{norm,qkv,proj,attention_biases},
//! local_conv, mlp.{norm,fc1,fc2}}`, `layers.I.downsample.conv{1,2,3}`, `neck.{0..3}`.
//! BatchNorm runs in eval mode (folded into the convolutions at load time), GELU is exact
//! (erf), as in the reference. Depthwise and 1×1 convolutions use direct CPU kernels (f32)
//! with their GELU, bias and residual in the same pass, and an MBConv block runs its three
//! convolutions together in bands of rows.
//!
//! ```
//! use candle_core::{DType, Device, Module, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use segany_sam_encoder::{TinyViT, TinyViTConfig};
//!
//! let cfg = TinyViTConfig {
//!     image_size: 64,
//!     embed_dims: vec![8, 16, 320],
//!     depths: vec![1, 1, 1],
//!     num_heads: vec![1, 2, 10],
//!     window_sizes: vec![7, 4, 4],
//!     mlp_ratio: 1.0,
//!     output_channels: 16,
//!     ..TinyViTConfig::tiny_vit_5m()
//! };
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
//! let encoder = TinyViT::new(&cfg, vb.pp("image_encoder")).unwrap();
//! let img = Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
//! let emb = encoder.forward(&img).unwrap();
//! assert_eq!(emb.dims(), &[1, 16, cfg.grid_size(), cfg.grid_size()]);
//! assert_eq!(cfg.grid_size(), 8);
//! ```

mod attention;
mod block;
mod config;
mod conv_bn;
mod conv_stage;
mod depthwise;
mod encoder;
mod gelu;
mod mbconv_bands;
mod pointwise;
#[cfg(test)]
mod test_util;
mod window_attention;

pub use attention::{attention_bias_idxs, TinyAttention};
pub use block::{TinyBlockSpec, TinyMlp, TinyViTBlock};
pub use config::TinyViTConfig;
pub use conv_bn::{Conv2dBN, ConvBnSpec};
pub use conv_stage::{MBConv, PatchEmbed, PatchMerging};
pub use encoder::TinyViT;
