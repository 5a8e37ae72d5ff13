//! SAM's ViT image encoder (ViT-B/L/H) on candle, and MobileSAM's TinyViT ([`tiny_vit`]).
//!
//! Module and tensor names follow Meta's original checkpoint (`image_encoder.blocks.N.attn.qkv`,
//! `image_encoder.neck.0`, ...); other layouts are renamed onto these by
//! [`segany_core::rename::sam`]. The forward pass reproduces `segment_anything/modeling/image_encoder.py`:
//! windowed and global attention with decomposed relative positions (tables interpolated
//! linearly when their length does not fit the input, as `get_rel_pos` does), exact GELU, and the
//! convolutional neck.
//!
//! ```
//! use candle_core::{DType, Device, Module, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use segany_sam_encoder::{ImageEncoderConfig, ImageEncoderViT};
//!
//! let cfg = ImageEncoderConfig::tiny_for_tests();
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
//! let encoder = ImageEncoderViT::new(&cfg, vb.pp("image_encoder")).unwrap();
//! let img = Tensor::zeros((1, 3, cfg.image_size, cfg.image_size), DType::F32, &Device::Cpu).unwrap();
//! let emb = encoder.forward(&img).unwrap();
//! assert_eq!(emb.dims(), &[1, cfg.output_channels, cfg.grid_size(), cfg.grid_size()]);
//! ```
#![warn(missing_docs)]

mod attention;
mod block;
mod config;
mod dense_conv;
mod encoder;
mod fused_softmax;
mod neck;
mod patch_embed;
mod rel_pos;
pub mod tiny_vit;
mod window;

pub use attention::Attention;
pub use block::Block;
pub use config::ImageEncoderConfig;
pub use encoder::ImageEncoderViT;
pub use fused_softmax::rel_pos_softmax;
pub use neck::Neck;
pub use patch_embed::PatchEmbed;
pub use rel_pos::{add_decomposed_rel_pos, get_rel_pos, interpolate_linear, rel_pos_terms};
/// The fused CPU attention kernel (moved to [`segany_core::nn::fused_attention`], shared with CLIP).
pub use segany_core::nn::fused_attention;
pub use tiny_vit::{TinyViT, TinyViTConfig};
pub use window::{window_partition, window_unpartition};
