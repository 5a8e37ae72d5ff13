//! SAM's prompt encoder, two-way transformer and mask decoder on candle.
//!
//! Tensor names follow Meta's original checkpoint (`prompt_encoder.point_embeddings.0.weight`,
//! `mask_decoder.transformer.layers.0.self_attn.q_proj.weight`, ...); the transformers layout is
//! renamed onto them by [`segany_core::rename::sam`]. The forward passes reproduce
//! `segment_anything/modeling/{prompt_encoder,transformer,mask_decoder}.py`, including exact GELU
//! and the official multimask selection.
//!
//! On the CPU in f32, the per-prompt image side (the attentions between the image and the
//! tokens after the first block, the image's residual and norm, the output upscaling and the
//! hypernetwork product) runs in fused kernels that reassociate the products around the few
//! tokens and work in cache-sized tiles; other devices and dtypes run the layer composition.
//! Each kernel is tested against that composition.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use segany_sam_decoder::{MaskDecoder, MaskDecoderConfig, PromptEncoder, PromptEncoderConfig};
//!
//! let dev = Device::Cpu;
//! let pcfg = PromptEncoderConfig { hidden_size: 32, image_size: 160, ..Default::default() };
//! let mcfg = MaskDecoderConfig { hidden_size: 32, mlp_dim: 64, iou_head_hidden_dim: 32, ..Default::default() };
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
//! let prompts = PromptEncoder::new(&pcfg, vb.pp("prompt_encoder")).unwrap();
//! let decoder = MaskDecoder::new(&mcfg, vb.pp("mask_decoder")).unwrap();
//! let coords = Tensor::new(&[[[40f32, 60.]]], &dev).unwrap();
//! let labels = Tensor::new(&[[1f32]], &dev).unwrap();
//! let (sparse, dense) = prompts.forward(Some((&coords, &labels)), None, None).unwrap();
//! let emb = Tensor::zeros((1, 32, 10, 10), DType::F32, &dev).unwrap();
//! let (masks, iou) = decoder.forward(&emb, &prompts.get_dense_pe().unwrap(), &sparse, &dense, true).unwrap();
//! assert_eq!(masks.dims(), &[1, 3, 40, 40]);
//! assert_eq!(iou.dims(), &[1, 3]);
//! ```
#![warn(missing_docs)]

mod attention;
mod config;
mod fused;
mod mask_decoder;
mod mlp;
mod position;
mod prompt_encoder;
#[cfg(test)]
mod test_util;
mod transformer;
mod upscale;

pub use attention::Attention;
pub use config::{
    MaskDecoderConfig, PromptEncoderConfig, LAYER_NORM_2D_EPS, TRANSFORMER_LAYER_NORM_EPS,
};
pub use mask_decoder::{DecodedTokens, MaskDecoder, PreparedImage};
pub use mlp::Mlp;
pub use position::PositionEmbeddingRandom;
pub use prompt_encoder::PromptEncoder;
pub use transformer::{
    FactoredTokens, ImageProjections, ImageTokens, PreparedKeys, TwoWayAttentionBlock,
    TwoWayTransformer,
};
pub use upscale::ConvTranspose2x2;
