//! The SSP-SAM head: everything between the CLIP encoders and SAM's mask decoder — spatial
//! prior, linguistic and visual adapters, tanh fusion, the prompt transformer and the box head.

use crate::activation::tanh_fusion;
use crate::attention::valid_token_mask;
use crate::config::SspSamConfig;
use crate::encoder_layer::EncoderLayer;
use crate::linguistic::LinguisticAdapter;
use crate::spatial::{l2_normalize_along, similarity_map};
use crate::visual::VisualAdapter;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::{layer_norm, linear, CpuMatmul, LayerNorm, Linear};
use segany_sam_decoder::Mlp;

/// What the CLIP encoders produced for a batch of (image, expression) pairs.
#[derive(Debug, Clone)]
pub struct ClipFeatures<'a> {
    /// CLIP Surgery image tokens `(B, 1+P², C)` (CLS first), not normalised.
    pub image_tokens: &'a Tensor,
    /// Projected end-of-text embedding `(B, C)`, not normalised.
    pub text_embedding: &'a Tensor,
    /// `ln_final` outputs of all context positions `(B, 77, C)`.
    pub word_features: &'a Tensor,
    /// Token ids `(B, 77)`, 0-padded (any integer or float dtype).
    pub token_ids: &'a Tensor,
}

/// Output of [`SspHead::forward`].
#[derive(Debug, Clone)]
pub struct HeadOutput {
    /// The semantic-spatial prompts `(B, 128, 256)` handed to SAM as sparse embeddings.
    pub prompts: Tensor,
    /// The auxiliary box `(B, 4)`: sigmoid `(cx, cy, w, h)` relative to the CLIP canvas.
    pub boxes: Tensor,
}

/// SSP-SAM's fusion head (official key names at the checkpoint root).
#[derive(Debug, Clone)]
pub struct SspHead {
    cfg: SspSamConfig,
    linguistic: LinguisticAdapter,
    visual: VisualAdapter,
    mlp: Linear,
    reg_token: Tensor,
    prompt_token: Tensor,
    layers: Vec<EncoderLayer>,
    /// Per layer, what `vl_pos_embed` adds to its query and key projections (fixed: computed
    /// once at load).
    position_terms: Vec<Tensor>,
    norm: LayerNorm,
    bbox_embed: Mlp,
}

impl SspHead {
    /// Loads the head from the checkpoint root (`text_proj.*`, `clip_img_proj.*`,
    /// `vl_transformer.encoder.layers.N.*`, `vl_pos_embed.weight`, `bbox_embed.*`, ...).
    pub fn new(cfg: &SspSamConfig, vb: VarBuilder) -> Result<Self> {
        let a = cfg.adapter_dim;
        let d = cfg.hidden_dim;
        let eps = cfg.layer_norm_eps;
        let layers = (0..cfg.num_layers)
            .map(|i| {
                EncoderLayer::new(
                    d,
                    cfg.num_heads,
                    cfg.ffn_dim,
                    eps,
                    vb.pp("vl_transformer").pp("encoder").pp("layers").pp(i),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let pos = vb
            .pp("vl_pos_embed")
            .get((cfg.sequence_len(), d), "weight")?
            .unsqueeze(0)?;
        let position_terms = layers
            .iter()
            .map(|l| l.position_terms(&pos))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            linguistic: LinguisticAdapter::new(cfg.clip_dim, a, vb.clone())?,
            visual: VisualAdapter::new(cfg.clip_dim, a, cfg.adapter_heads, eps, vb.clone())?,
            mlp: linear(a, d, vb.pp("mlp"))?,
            reg_token: vb.pp("reg_token").get((1, d), "weight")?,
            prompt_token: vb.pp("prompt_token").get((cfg.num_prompts, d), "weight")?,
            layers,
            position_terms,
            norm: layer_norm(d, eps, vb.pp("norm"))?,
            bbox_embed: Mlp::new(d, d, 4, 3, true, vb.pp("bbox_embed"))?,
        })
    }

    /// The arithmetic of the head's products on the CPU in f32 ([`CpuMatmul`]): with
    /// [`CpuMatmul::Bf16`], every linear layer (adapters, fusion, the prompt transformer's
    /// projections and feed-forward, the box head) rounds its input and weight to bf16 and sums
    /// in f32, on CPUs with AVX-512 BF16; attention scores, softmax, the GRU's recurrence and
    /// the norms stay in f32. Returns whether bf16 is on (`false`, and nothing changed, on
    /// other CPUs, devices or dtypes). On the golden files the prompts stay within 2.1e-2 of
    /// the official f32 outputs and the masks agree on ≥ 99.9% of the pixels
    /// (`tests/golden.rs`).
    ///
    /// ```
    /// # use candle_core::{DType, Device};
    /// # use candle_nn::VarBuilder;
    /// use segany_core::nn::CpuMatmul;
    /// use segany_ssp::{SspHead, SspSamConfig};
    /// let cfg = SspSamConfig::vit_b16_224();
    /// let mut head = SspHead::new(&cfg, VarBuilder::zeros(DType::F32, &Device::Cpu))?;
    /// let bf16 = head.set_cpu_matmul(CpuMatmul::Bf16)?;
    /// println!("bf16 products: {bf16}");
    /// assert!(!head.set_cpu_matmul(CpuMatmul::F32)?);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn set_cpu_matmul(&mut self, mode: CpuMatmul) -> Result<bool> {
        let mut on = self.linguistic.set_cpu_matmul(mode)?
            & self.visual.set_cpu_matmul(mode)?
            & self.mlp.set_cpu_matmul(mode)?
            & self.bbox_embed.set_cpu_matmul(mode)?;
        for layer in &mut self.layers {
            on &= layer.set_cpu_matmul(mode)?;
        }
        Ok(on)
    }

    /// The configuration the head was built with.
    pub fn config(&self) -> &SspSamConfig {
        &self.cfg
    }

    fn check_inputs(&self, x: &ClipFeatures) -> Result<usize> {
        let p2 = self.cfg.grid() * self.cfg.grid();
        let c = self.cfg.clip_dim;
        let t = self.cfg.context_length;
        let (b, n, ci) = x.image_tokens.dims3()?;
        if n != 1 + p2 || ci != c {
            candle_core::bail!(
                "image tokens are {:?}, expected (B, {}, {c})",
                x.image_tokens.dims(),
                1 + p2
            );
        }
        if x.text_embedding.dims() != [b, c] {
            candle_core::bail!(
                "text embedding is {:?}, expected ({b}, {c})",
                x.text_embedding.dims()
            );
        }
        if x.word_features.dims() != [b, t, c] {
            candle_core::bail!(
                "word features are {:?}, expected ({b}, {t}, {c})",
                x.word_features.dims()
            );
        }
        if x.token_ids.dims() != [b, t] {
            candle_core::bail!(
                "token ids are {:?}, expected ({b}, {t})",
                x.token_ids.dims()
            );
        }
        Ok(b)
    }

    /// The semantic-spatial prompts and the auxiliary box for a batch of CLIP features.
    pub fn forward(&self, x: &ClipFeatures) -> Result<HeadOutput> {
        let b = self.check_inputs(x)?;
        let dtype = self.prompt_token.dtype();
        let image = l2_normalize_along(&x.image_tokens.to_dtype(dtype)?, 1)?;
        let text = l2_normalize_along(&x.text_embedding.to_dtype(dtype)?, 1)?;
        let sim_map = similarity_map(&image, &text)?;
        let n = image.dim(1)?;
        let patches = image.narrow(1, 1, n - 1)?;
        let valid = valid_token_mask(x.token_ids, dtype)?;

        let lang = self
            .linguistic
            .forward(&x.word_features.to_dtype(dtype)?, &valid)?;
        let visual = self
            .visual
            .forward(&patches, &sim_map, &lang.words, &valid)?;
        // tanh(visual) ⊙ tanh(sentence), broadcast over the patches, then Linear(512→256).
        let fused = self.mlp.forward(&tanh_fusion(&visual, &lang.sentence)?)?;

        let d = self.cfg.hidden_dim;
        let reg = self.reg_token.unsqueeze(0)?.broadcast_as((b, 1, d))?;
        let prompts = self
            .prompt_token
            .unsqueeze(0)?
            .broadcast_as((b, self.cfg.num_prompts, d))?;
        let mut src = Tensor::cat(&[&reg, &prompts, &fused], 1)?;
        // Only the box token and the prompts are read from the last layer: its patch rows
        // (576 of 705 for the 336 head) are keys and values there but not computed as outputs.
        let read = 1 + self.cfg.num_prompts;
        for (i, (layer, terms)) in self.layers.iter().zip(&self.position_terms).enumerate() {
            let rows = (i + 1 == self.layers.len()).then_some(read);
            src = layer.forward_first_terms(&src, terms, rows)?;
        }
        let hs = self.norm.forward(&src)?;
        let boxes = self.bbox_embed.forward(&hs.narrow(1, 0, 1)?.squeeze(1)?)?;
        let prompts = hs.narrow(1, 1, self.cfg.num_prompts)?.contiguous()?;
        Ok(HeadOutput { prompts, boxes })
    }
}
