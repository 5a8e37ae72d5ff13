//! SSP-SAM's semantic-spatial prompt head on candle: from CLIP Surgery image tokens, the CLIP
//! text embedding and word features to the 128 prompts SAM's mask decoder turns into a mask
//! (`WayneTomas/SSP-SAM`, `models/ssp_sam_224.py` and `models/ssp_sam_336.py`; one
//! implementation, the variant is [`SspSamConfig`]).
//!
//! Checkpoint keys are the official ones (`text_proj.weight_ih_l0`, `phrase_attn.fc.weight`,
//! `clip_img_proj.layers.0.weight`, `img2text_attn.in_proj_weight`,
//! `vl_transformer.encoder.layers.0.self_attn.in_proj_weight`, `vl_pos_embed.weight`,
//! `sam.mask_decoder.*`, ...); stored but unused modules are recognised by [`is_ignored_key`].
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use segany_ssp::{ClipFeatures, SspSam, SspSamConfig};
//!
//! let dev = Device::Cpu;
//! let cfg = SspSamConfig::vit_b16_224();
//! let varmap = VarMap::new();
//! let model = SspSam::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
//! let img = Tensor::randn(0f32, 1., (1, 197, 512), &dev).unwrap();
//! let txt = Tensor::randn(0f32, 1., (1, 512), &dev).unwrap();
//! let words = Tensor::randn(0f32, 1., (1, 77, 512), &dev).unwrap();
//! let mut ids = vec![0u32; 77];
//! ids[..4].copy_from_slice(&[49406, 320, 269, 49407]);
//! let ids = Tensor::from_vec(ids, (1, 77), &dev).unwrap();
//! let clip = ClipFeatures { image_tokens: &img, text_embedding: &txt, word_features: &words, token_ids: &ids };
//! let emb = Tensor::zeros((1, 256, 64, 64), DType::F32, &dev).unwrap();
//! let out = model.forward(&clip, &emb).unwrap();
//! assert_eq!(out.prompts.dims(), &[1, 128, 256]);
//! assert_eq!(out.boxes.dims(), &[1, 4]);
//! assert_eq!(out.logits_512.dims(), &[1, 1, 512, 512]);
//! ```
#![warn(missing_docs)]

mod activation;
pub mod attention;
mod config;
mod encoder_layer;
mod gru;
mod head;
mod key_subset;
mod linguistic;
mod model;
pub mod spatial;
mod visual;

pub use attention::{valid_token_mask, MultiheadAttention};
pub use config::SspSamConfig;
pub use encoder_layer::EncoderLayer;
pub use gru::BiGru;
pub use head::{ClipFeatures, HeadOutput, SspHead};
pub use linguistic::{LinguisticAdapter, LinguisticOutput};
pub use model::{is_ignored_key, SspOutput, SspSam};
pub use visual::VisualAdapter;
