//! The two-way transformer: tokens attend to the image and the image attends to tokens.

use crate::attention::Attention;
use crate::config::{MaskDecoderConfig, TRANSFORMER_LAYER_NORM_EPS};
use crate::fused;
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
        self.forward_with(queries, keys, query_pe, key_pe, None)
    }

    /// The image side's projections in this block for image tokens `keys` that have not been
    /// updated yet (the first block): `k_proj(keys + pe)` and `v_proj(keys)` of the
    /// token-to-image attention, `q_proj(keys + pe)` of the image-to-token attention.
    pub fn project_image(&self, keys: &Tensor, key_pe: &Tensor) -> Result<ImageProjections> {
        let k = keys.broadcast_add(key_pe)?;
        Ok(ImageProjections {
            token_to_image_keys: self.cross_attn_token_to_image.project_keys(&k)?,
            token_to_image_values: self.cross_attn_token_to_image.project_values(keys)?,
            image_to_token_queries: self.cross_attn_image_to_token.project_queries(&k)?,
        })
    }

    /// [`Self::forward`] with the image side's projections computed beforehand
    /// ([`Self::project_image`] of the same `keys` and `key_pe`).
    pub fn forward_with(
        &self,
        queries: &Tensor,
        keys: &Tensor,
        query_pe: &Tensor,
        key_pe: &Tensor,
        image: Option<&ImageProjections>,
    ) -> Result<(Tensor, Tensor)> {
        let queries = if self.skip_first_layer_pe {
            self.self_attn.forward(queries, queries, queries)?
        } else {
            let q = (queries + query_pe)?;
            (queries + self.self_attn.forward(&q, &q, queries)?)?
        };
        let queries = self.norm1.forward(&queries)?;

        // `keys` may be one image shared by every prompt (batch 1): its projections then run
        // once for the batch (see `Attention::attend`). On the CPU, an image of its own per
        // prompt goes through the fused kernels, which never project all image tokens.
        let fast = use_kernels(keys, key_pe)?;
        let owned;
        let image = match image {
            Some(p) => Some(p),
            None if fast => None,
            None => {
                owned = self.project_image(keys, key_pe)?;
                Some(&owned)
            }
        };
        let q = (&queries + query_pe)?;
        let attn = match image {
            Some(p) if fast && p.token_to_image_keys.dim(0)? == 1 => fused::token_to_shared_image(
                &self.cross_attn_token_to_image,
                &q,
                &p.token_to_image_keys,
                &p.token_to_image_values,
            )?,
            Some(p) => self.cross_attn_token_to_image.attend(
                &self.cross_attn_token_to_image.project_queries(&q)?,
                &p.token_to_image_keys,
                &p.token_to_image_values,
            )?,
            None => fused::token_to_image(&self.cross_attn_token_to_image, &q, keys, key_pe)?,
        };
        let queries = (&queries + attn)?;
        let queries = self.norm2.forward(&queries)?;

        let mlp = self.lin2.forward(&self.lin1.forward(&queries)?.relu()?)?;
        let queries = self.norm3.forward(&(queries + mlp)?)?;

        let q = (&queries + query_pe)?;
        if fast {
            let keys = fused::image_to_token(
                &self.cross_attn_image_to_token,
                &self.norm4,
                keys,
                key_pe,
                image.map(|p| &p.image_to_token_queries),
                &q,
                &queries,
            )?;
            return Ok((queries, keys));
        }
        let Some(image) = image else {
            candle_core::bail!("two-way block: image projections missing off the fused path")
        };
        let attn = self.cross_attn_image_to_token.attend(
            &image.image_to_token_queries,
            &self.cross_attn_image_to_token.project_keys(&q)?,
            &self.cross_attn_image_to_token.project_values(&queries)?,
        )?;
        let keys = keys.broadcast_add(&attn)?;
        let keys = self.norm4.forward(&keys)?;
        Ok((queries, keys))
    }
}

/// Whether the fused CPU kernels take the image side: f32 on the CPU, one positional encoding.
fn use_kernels(keys: &Tensor, key_pe: &Tensor) -> Result<bool> {
    Ok(fused::applies(keys) && fused::applies(key_pe) && key_pe.dim(0)? == 1)
}

/// A block's projections of the image tokens, heads split (`(B, heads, h·w, c)`).
#[derive(Debug, Clone)]
pub struct ImageProjections {
    token_to_image_keys: Tensor,
    token_to_image_values: Tensor,
    image_to_token_queries: Tensor,
}

/// The prompt-independent start of the two-way transformer for one image: the image tokens,
/// their positional encoding and the first block's projections of them
/// ([`TwoWayTransformer::prepare`]).
#[derive(Debug, Clone)]
pub struct PreparedKeys {
    keys: Tensor,
    key_pe: Tensor,
    first: Option<ImageProjections>,
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
        self.forward_prepared(&self.prepare(image, image_pe)?, tokens)
    }

    /// Everything of [`Self::forward`] that does not depend on the prompts: flattens
    /// `image (B, D, h, w)` and `image_pe` to tokens and runs the first block's image-side
    /// projections. Prepare once per image, then [`Self::forward_prepared`] per prompt batch.
    pub fn prepare(&self, image: &Tensor, image_pe: &Tensor) -> Result<PreparedKeys> {
        let keys = transpose_last2(&image.flatten_from(2)?)?;
        let key_pe = transpose_last2(&image_pe.flatten_from(2)?)?;
        let first = match self.layers.first() {
            Some(layer) => Some(layer.project_image(&keys, &key_pe)?),
            None => None,
        };
        Ok(PreparedKeys {
            keys,
            key_pe,
            first,
        })
    }

    /// [`Self::forward`] on a prepared image.
    pub fn forward_prepared(
        &self,
        image: &PreparedKeys,
        tokens: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let mut queries = tokens.clone();
        let mut keys = image.keys.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let pre = if i == 0 { image.first.as_ref() } else { None };
            let (q, k) = layer.forward_with(&queries, &keys, tokens, &image.key_pe, pre)?;
            queries = q;
            keys = k;
        }
        let q = (&queries + tokens)?;
        let attn = if use_kernels(&keys, &image.key_pe)? {
            fused::token_to_image(&self.final_attn_token_to_image, &q, &keys, &image.key_pe)?
        } else {
            let k = keys.broadcast_add(&image.key_pe)?;
            self.final_attn_token_to_image.forward(&q, &k, &keys)?
        };
        let queries = self.norm_final_attn.forward(&(queries + attn)?)?;
        Ok((queries, keys))
    }
}
