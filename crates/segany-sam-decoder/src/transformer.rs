//! The two-way transformer: tokens attend to the image and the image attends to tokens.

use crate::attention::Attention;
use crate::config::{MaskDecoderConfig, TRANSFORMER_LAYER_NORM_EPS};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::{layer_norm, linear, transpose_last2, LayerNorm, Linear};

/// One `TwoWayAttentionBlock`.
#[derive(Debug, Clone)]
pub struct TwoWayAttentionBlock {
    self_attn: Attention,
    norm1: LayerNorm,
    cross_attn_token_to_image: Attention,
    norm2: LayerNorm,
    lin1: Linear,
    lin2: Linear,
    norm3: LayerNorm,
    norm4: LayerNorm,
    cross_attn_image_to_token: Attention,
    skip_first_layer_pe: bool,
}

impl TwoWayAttentionBlock {
    /// Loads block `vb` (`mask_decoder.transformer.layers.N`).
    pub fn new(cfg: &MaskDecoderConfig, skip_first_layer_pe: bool, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        let h = cfg.num_attention_heads;
        let r = cfg.attention_downsample_rate;
        let eps = cfg.layer_norm_eps.unwrap_or(TRANSFORMER_LAYER_NORM_EPS);
        Ok(Self {
            self_attn: Attention::new(d, h, 1, vb.pp("self_attn"))?,
            norm1: layer_norm(d, eps, vb.pp("norm1"))?,
            cross_attn_token_to_image: Attention::new(d, h, r, vb.pp("cross_attn_token_to_image"))?,
            norm2: layer_norm(d, eps, vb.pp("norm2"))?,
            lin1: linear(d, cfg.mlp_dim, vb.pp("mlp").pp("lin1"))?,
            lin2: linear(cfg.mlp_dim, d, vb.pp("mlp").pp("lin2"))?,
            norm3: layer_norm(d, eps, vb.pp("norm3"))?,
            norm4: layer_norm(d, eps, vb.pp("norm4"))?,
            cross_attn_image_to_token: Attention::new(d, h, r, vb.pp("cross_attn_image_to_token"))?,
            skip_first_layer_pe,
        })
    }

    /// Updates `(queries, keys)`.
    pub fn forward(
        &self,
        queries: &Tensor,
        keys: &Tensor,
        query_pe: &Tensor,
        key_pe: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let queries = if self.skip_first_layer_pe {
            self.self_attn.forward(queries, queries, queries)?
        } else {
            let q = (queries + query_pe)?;
            (queries + self.self_attn.forward(&q, &q, queries)?)?
        };
        let queries = self.norm1.forward(&queries)?;

        let q = (&queries + query_pe)?;
        // `keys` does not change before the image-to-token attention: one sum serves both.
        // In the first block `keys` may be one image shared by every prompt (batch 1): its
        // projections then run once (see `Attention::forward`).
        let k = keys.broadcast_add(key_pe)?;
        let queries = (&queries + self.cross_attn_token_to_image.forward(&q, &k, keys)?)?;
        let queries = self.norm2.forward(&queries)?;

        let mlp = self.lin2.forward(&self.lin1.forward(&queries)?.relu()?)?;
        let queries = self.norm3.forward(&(queries + mlp)?)?;

        let q = (&queries + query_pe)?;
        let keys = keys.broadcast_add(&self.cross_attn_image_to_token.forward(&k, &q, &queries)?)?;
        let keys = self.norm4.forward(&keys)?;
        Ok((queries, keys))
    }
}

/// SAM's `TwoWayTransformer`.
#[derive(Debug, Clone)]
pub struct TwoWayTransformer {
    layers: Vec<TwoWayAttentionBlock>,
    final_attn_token_to_image: Attention,
    norm_final_attn: LayerNorm,
}

impl TwoWayTransformer {
    /// Loads the transformer from `vb` (`mask_decoder.transformer`).
    pub fn new(cfg: &MaskDecoderConfig, vb: VarBuilder) -> Result<Self> {
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| TwoWayAttentionBlock::new(cfg, i == 0, vb.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let d = cfg.hidden_size;
        Ok(Self {
            layers,
            final_attn_token_to_image: Attention::new(
                d,
                cfg.num_attention_heads,
                cfg.attention_downsample_rate,
                vb.pp("final_attn_token_to_image"),
            )?,
            norm_final_attn: layer_norm(d, TRANSFORMER_LAYER_NORM_EPS, vb.pp("norm_final_attn"))?,
        })
    }

    /// `image (B, D, h, w)`, `image_pe (B, D, h, w)`, `tokens (B, N, D)` →
    /// `(tokens (B, N, D), image (B, h·w, D))`. `image` and `image_pe` may have batch 1 (one
    /// image for all B prompts): the first block then projects the image once.
    pub fn forward(
        &self,
        image: &Tensor,
        image_pe: &Tensor,
        tokens: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let image = transpose_last2(&image.flatten_from(2)?)?;
        let image_pe = transpose_last2(&image_pe.flatten_from(2)?)?;
        let mut queries = tokens.clone();
        let mut keys = image;
        for layer in &self.layers {
            let (q, k) = layer.forward(&queries, &keys, tokens, &image_pe)?;
            queries = q;
            keys = k;
        }
        let q = (&queries + tokens)?;
        let k = keys.broadcast_add(&image_pe)?;
        let attn = self.final_attn_token_to_image.forward(&q, &k, &keys)?;
        let queries = self.norm_final_attn.forward(&(queries + attn)?)?;
        Ok((queries, keys))
    }
}
