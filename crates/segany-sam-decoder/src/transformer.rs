//! The two-way transformer: tokens attend to the image and the image attends to tokens.

use crate::attention::Attention;
use crate::config::{MaskDecoderConfig, TRANSFORMER_LAYER_NORM_EPS};
use crate::fused;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::{add, layer_norm, linear, transpose_last2, LayerNorm, Linear};
use std::sync::{Arc, OnceLock};

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
        let queries = self.self_attention(queries, query_pe)?;

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
        let q = add(&queries, query_pe)?;
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
        let queries = add(&queries, &attn)?;
        let queries = self.norm2.forward(&queries)?;
        let queries = self.mlp(&queries)?;

        let q = add(&queries, query_pe)?;
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

impl TwoWayAttentionBlock {
    /// The tokens' self-attention (with its residual unless this is the first block) and
    /// `norm1`.
    fn self_attention(&self, queries: &Tensor, query_pe: &Tensor) -> Result<Tensor> {
        let queries = if self.skip_first_layer_pe {
            self.self_attn.forward(queries, queries, queries)?
        } else {
            let q = add(queries, query_pe)?;
            add(queries, &self.self_attn.forward(&q, &q, queries)?)?
        };
        self.norm1.forward(&queries)
    }

    /// The tokens' MLP, residual and `norm3`.
    fn mlp(&self, queries: &Tensor) -> Result<Tensor> {
        let hidden = self.lin1.forward_relu(queries)?;
        self.norm3
            .forward(&self.lin2.forward_add(&hidden, queries)?)
    }

    /// [`Self::forward_with`] on the fused CPU path for a batch of prompts sharing one image,
    /// keeping the image side factored: the token-to-image attention reads the image through
    /// `image` (the first block's shared projections, or the factored tokens of the later
    /// blocks), and the image-to-token step returns only its update ([`fused::ImageUpdate`]):
    /// no block materialises the image tokens over the shared image `keys (1, N, D)`.
    fn forward_factored(
        &self,
        queries: &Tensor,
        keys: &Tensor,
        query_pe: &Tensor,
        key_pe: &Tensor,
        image: FactoredImage,
        pool: &fused::BufferPool,
    ) -> Result<(Tensor, fused::ImageUpdate)> {
        let queries = self.self_attention(queries, query_pe)?;
        let q = add(&queries, query_pe)?;
        let (attn, image_queries, earlier) = match image {
            FactoredImage::First(p) => (
                fused::token_to_shared_image(
                    &self.cross_attn_token_to_image,
                    &q,
                    &p.token_to_image_keys,
                    &p.token_to_image_values,
                )?,
                fused::ImageQueries::Shared(&p.image_to_token_queries),
                None,
            ),
            FactoredImage::Later(shared, shared_queries, low_rank) => (
                fused::token_to_low_rank_image(
                    &self.cross_attn_token_to_image,
                    &q,
                    shared,
                    low_rank,
                )?,
                fused::ImageQueries::Factored(shared_queries, low_rank),
                Some(low_rank),
            ),
        };
        let queries = self.norm2.forward(&add(&queries, &attn)?)?;
        let queries = self.mlp(&queries)?;
        let q = add(&queries, query_pe)?;
        let (b, nt, _) = queries.dims3()?;
        let n = key_pe.dim(1)?;
        let hn = self.cross_attn_image_to_token.num_heads() * nt;
        let update = fused::image_to_token_factored(
            &self.cross_attn_image_to_token,
            &self.norm4,
            keys,
            earlier,
            key_pe,
            image_queries,
            (&q, &queries),
            (pool.take(b * n * hn), Some(pool)),
        )?;
        Ok((queries, update))
    }
}

/// How a block of the factored path sees the image.
enum FactoredImage<'a> {
    /// The first block: the shared image's projections.
    First(&'a ImageProjections),
    /// Later blocks: the shared projections for this block's token-to-image attention and
    /// for its image-to-token queries, and the earlier blocks' updates.
    Later(
        &'a fused::SharedProjections,
        &'a fused::SharedQueries,
        fused::LowRankKeys<'a>,
    ),
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
///
/// Decoding batches of at least four prompts on the CPU adds, on first use, the image's
/// projections for the later attentions (≈ 16 MB for SAM's decoder) and keeps the large
/// per-batch buffers from one batch to the next (≈ 6 MB per prompt of the largest batch: 0.4 GB
/// at 64 prompts). Both are freed with the prepared image (and its clones).
#[derive(Debug, Clone)]
pub struct PreparedKeys {
    keys: Tensor,
    key_pe: Tensor,
    first: Option<ImageProjections>,
    /// For the factored path, built on its first use.
    factored: OnceLock<SharedImage>,
    /// The factored path's large per-batch buffers, kept from one batch to the next.
    pool: fused::BufferPool,
}

/// The shared image projected for the factored path: per block after the first and for the
/// final attention, for its token-to-image attention (`t2i`), and per block after the first
/// for its image-to-token queries (`i2t`).
#[derive(Debug, Clone)]
struct SharedImage {
    t2i: Vec<fused::SharedProjections>,
    i2t: Vec<fused::SharedQueries>,
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
            factored: OnceLock::new(),
            pool: fused::BufferPool::default(),
        })
    }

    /// [`Self::forward`] on a prepared image.
    pub fn forward_prepared(
        &self,
        image: &PreparedKeys,
        tokens: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (queries, keys) = self.forward_prepared_tokens(image, tokens)?;
        Ok((queries, keys.materialise()?))
    }

    /// [`Self::forward_prepared`], leaving the image tokens factored where they are
    /// ([`ImageTokens`]): a batch of prompts on one image on the CPU in f32.
    pub fn forward_prepared_tokens(
        &self,
        image: &PreparedKeys,
        tokens: &Tensor,
    ) -> Result<(Tensor, ImageTokens)> {
        self.forward_prepared_leading(image, tokens, tokens.dim(1)?)
    }

    /// [`Self::forward_prepared_tokens`] returning only the first `outputs` tokens
    /// `(B, outputs, D)`: the final attention runs for those queries alone. Each query's
    /// attention is its own, so they are the same values as the first `outputs` rows of the
    /// whole result. (The mask decoder reads the IoU and mask tokens, not the prompts' own.)
    pub fn forward_prepared_leading(
        &self,
        image: &PreparedKeys,
        tokens: &Tensor,
        outputs: usize,
    ) -> Result<(Tensor, ImageTokens)> {
        let nt = tokens.dim(1)?;
        if outputs == 0 || outputs > nt {
            candle_core::bail!("two-way transformer: {outputs} output tokens of {nt}")
        }
        if let Some(first) = &image.first {
            if tokens.dim(0)? >= FACTORED_MIN_BATCH
                && image.keys.dim(0)? == 1
                && use_kernels(&image.keys, &image.key_pe)?
                && fused::applies(tokens)
            {
                return self.forward_factored(image, first, tokens, outputs);
            }
        }
        let mut queries = tokens.clone();
        let mut keys = image.keys.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let pre = if i == 0 { image.first.as_ref() } else { None };
            let (q, k) = layer.forward_with(&queries, &keys, tokens, &image.key_pe, pre)?;
            queries = q;
            keys = k;
        }
        let queries = queries.narrow(1, 0, outputs)?;
        let q = add(&queries, &tokens.narrow(1, 0, outputs)?)?;
        let attn = if use_kernels(&keys, &image.key_pe)? {
            fused::token_to_image(&self.final_attn_token_to_image, &q, &keys, &image.key_pe)?
        } else {
            let k = keys.broadcast_add(&image.key_pe)?;
            self.final_attn_token_to_image.forward(&q, &k, &keys)?
        };
        let queries = self.norm_final_attn.forward(&add(&queries, &attn)?)?;
        Ok((queries, ImageTokens::Dense(keys)))
    }
}

/// The image tokens after the two-way transformer.
#[derive(Debug, Clone)]
pub enum ImageTokens {
    /// Materialised, `(B, h·w, D)`, or `(1, h·w, D)` when shared by every prompt.
    Dense(Tensor),
    /// Per prompt, factored through the image every prompt started from.
    Factored(FactoredTokens),
}

impl ImageTokens {
    /// The tokens as one tensor (materialising factored ones: `(B, h·w, D)`).
    pub fn materialise(&self) -> Result<Tensor> {
        match self {
            Self::Dense(t) => Ok(t.clone()),
            Self::Factored(f) => f.materialise(),
        }
    }
}

/// Per-prompt image tokens kept as what each block did to the shared image `(1, h·w, D)`
/// they started from: a rank-(heads·tokens) update followed by a layer norm, per block. Any
/// linear map of the tokens is then the map of the shared image (once per image) plus a
/// narrow product per prompt, which is how the later attentions and the upscaling read them.
#[derive(Debug, Clone)]
pub struct FactoredTokens {
    image: Tensor,
    updates: Arc<Vec<fused::ImageUpdate>>,
}

impl FactoredTokens {
    /// The shared image the prompts started from, `(1, h·w, D)`.
    pub fn image(&self) -> &Tensor {
        &self.image
    }

    /// The factored form the kernels read.
    pub(crate) fn low_rank(&self) -> Result<fused::LowRankKeys<'_>> {
        fused::LowRankKeys::new(&self.updates)
    }

    /// `(B, h·w, D)`.
    pub fn materialise(&self) -> Result<Tensor> {
        let (_, n, d) = self.image.dims3()?;
        let low = self.low_rank()?;
        let out = segany_core::nn::with_f32_values(&self.image, |x| low.materialise(x))?;
        Tensor::from_vec(out, (low.batch(), n, d), self.image.device())
    }
}

/// Prompts per batch from which [`TwoWayTransformer::forward_prepared`] keeps the image
/// factored (see [`fused::LowRankKeys`]). Its first use on an image projects the image once
/// more per later attention (about two plain prompts' worth of work), and its kernels run one
/// prompt per thread, so a handful of prompts keeps the plain path, whose products are split
/// over the threads.
const FACTORED_MIN_BATCH: usize = 4;

impl TwoWayTransformer {
    /// [`Self::forward_prepared`] for a batch of prompts on one shared image, with the
    /// blocks after the first reading the image in factored form: the same function, about
    /// half the arithmetic per prompt.
    fn forward_factored(
        &self,
        image: &PreparedKeys,
        first: &ImageProjections,
        tokens: &Tensor,
        outputs: usize,
    ) -> Result<(Tensor, ImageTokens)> {
        if image.factored.get().is_none() {
            let shared = self.shared_projections(&image.keys, &image.key_pe)?;
            // Another thread may have set it meanwhile: both computed the same values.
            let _ = image.factored.set(shared);
        }
        let Some(shared) = image.factored.get() else {
            candle_core::bail!("two-way transformer: shared projections missing")
        };
        let mut queries = tokens.clone();
        let mut updates: Vec<fused::ImageUpdate> = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let side = match i {
                0 => FactoredImage::First(first),
                _ => FactoredImage::Later(
                    &shared.t2i[i - 1],
                    &shared.i2t[i - 1],
                    fused::LowRankKeys::new(&updates)?,
                ),
            };
            let (q, update) = layer.forward_factored(
                &queries,
                &image.keys,
                tokens,
                &image.key_pe,
                side,
                &image.pool,
            )?;
            queries = q;
            updates.push(update);
        }
        let queries = queries.narrow(1, 0, outputs)?;
        let q = add(&queries, &tokens.narrow(1, 0, outputs)?)?;
        let Some(last) = shared.t2i.last() else {
            candle_core::bail!("two-way transformer: no shared projection for the final attention")
        };
        let attn = fused::token_to_low_rank_image(
            &self.final_attn_token_to_image,
            &q,
            last,
            fused::LowRankKeys::new(&updates)?,
        )?;
        let queries = self.norm_final_attn.forward(&add(&queries, &attn)?)?;
        let factored = FactoredTokens {
            image: image.keys.clone(),
            updates: Arc::new(updates),
        };
        Ok((queries, ImageTokens::Factored(factored)))
    }

    /// The shared image `keys (1, N, D)` and `key_pe` projected for the factored path, each
    /// projection with the product of the `norm4` gains before it.
    fn shared_projections(&self, keys: &Tensor, key_pe: &Tensor) -> Result<SharedImage> {
        let d = keys.dim(2)?;
        let mut gain = vec![1f32; d];
        let mut t2i = Vec::with_capacity(self.layers.len());
        let mut i2t = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let g: Vec<f32> = layer
                .norm4
                .weight()
                .to_dtype(candle_core::DType::F32)?
                .to_vec1()?;
            for (a, g) in gain.iter_mut().zip(g) {
                *a *= g;
            }
            let attn = match self.layers.get(i + 1) {
                Some(next) => {
                    let queries = &next.cross_attn_image_to_token;
                    i2t.push(fused::SharedQueries::new(queries, keys, key_pe, &gain)?);
                    &next.cross_attn_token_to_image
                }
                None => &self.final_attn_token_to_image,
            };
            t2i.push(fused::SharedProjections::new(attn, keys, key_pe, &gain)?);
        }
        Ok(SharedImage { t2i, i2t })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{pseudo_random, randomise};
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        assert_eq!(a.dims(), b.dims());
        (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
    }

    /// A 32-wide transformer of `depth` blocks on random weights.
    fn random_transformer(depth: usize) -> Result<TwoWayTransformer> {
        let cfg = MaskDecoderConfig {
            hidden_size: 32,
            mlp_dim: 64,
            num_hidden_layers: depth,
            ..Default::default()
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        TwoWayTransformer::new(&cfg, vb.pp("t"))?;
        randomise(&varmap, 0.5)?;
        // Built after the weights are set: `Linear` copies its weight at build time.
        TwoWayTransformer::new(&cfg, vb.pp("t"))
    }

    /// A batch of prompts on one image through the factored path equals the layer composition
    /// (fused kernels off) for one, two and three blocks: the factored form is built for any
    /// depth, not just SAM's two.
    #[test]
    fn factored_path_matches_composition_at_any_depth() -> Result<()> {
        for depth in [1, 2, 3] {
            let t = random_transformer(depth)?;
            let image = pseudo_random(&[1, 32, 6, 5], 1, 1.0)?;
            let pe = pseudo_random(&[1, 32, 6, 5], 2, 1.0)?;
            let tokens = pseudo_random(&[FACTORED_MIN_BATCH + 1, 7, 32], 3, 1.0)?;
            let prepared = t.prepare(&image, &pe)?;
            let (queries, keys) = t.forward_prepared_tokens(&prepared, &tokens)?;
            assert!(
                matches!(keys, ImageTokens::Factored(_)),
                "depth {depth}: the batch did not take the factored path"
            );
            let keys = keys.materialise()?;
            crate::fused::DISABLED.with(|d| d.set(true));
            let plain = t.forward(&image, &pe, &tokens);
            crate::fused::DISABLED.with(|d| d.set(false));
            let (plain_queries, plain_keys) = plain?;
            let (dq, dk) = (
                max_diff(&queries, &plain_queries)?,
                max_diff(&keys, &plain_keys)?,
            );
            assert!(
                dq < 1e-4 && dk < 1e-4,
                "depth {depth}: queries {dq}, keys {dk}"
            );
            // Prompts that differ, so mixing them up would show.
            let spread = max_diff(&queries.get(0)?, &queries.get(1)?)?;
            assert!(
                spread > 1e-2,
                "depth {depth}: prompts 0 and 1 differ by {spread} only"
            );
        }
        Ok(())
    }

    /// Only the leading tokens through the final attention: the same values as the leading
    /// rows of the whole result, on the factored path (a batch) and the plain one (one
    /// prompt); no tokens or more than there are is an error.
    #[test]
    fn leading_outputs_equal_the_leading_rows() -> Result<()> {
        let t = random_transformer(2)?;
        let image = pseudo_random(&[1, 32, 6, 5], 1, 1.0)?;
        let pe = pseudo_random(&[1, 32, 6, 5], 2, 1.0)?;
        let prepared = t.prepare(&image, &pe)?;
        for batch in [FACTORED_MIN_BATCH + 1, 1] {
            let tokens = pseudo_random(&[batch, 7, 32], 3, 1.0)?;
            let (all, _) = t.forward_prepared_tokens(&prepared, &tokens)?;
            let (lead, _) = t.forward_prepared_leading(&prepared, &tokens, 5)?;
            assert_eq!(lead.dims(), [batch, 5, 32]);
            let d = max_diff(&lead, &all.narrow(1, 0, 5)?)?;
            assert!(d == 0.0, "batch {batch}: {d}");
            assert!(t.forward_prepared_leading(&prepared, &tokens, 0).is_err());
            assert!(t.forward_prepared_leading(&prepared, &tokens, 8).is_err());
        }
        Ok(())
    }
}
