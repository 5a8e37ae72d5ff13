//! `Sam`: image encoder, prompt encoder and mask decoder, loaded from any supported checkpoint.

use super::config::EncoderKind;
use super::SamConfig;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use segany_core::checkpoint::CheckedVarBuilder;
use segany_core::rename::sam::SamLayout;
use segany_core::{CheckpointSource, Error, Result, TensorStore};
use segany_sam_decoder::{DecodedTokens, MaskDecoder, PreparedImage, PromptEncoder};
use segany_sam_encoder::{ImageEncoderViT, TinyViT};

/// Weight file names tried, in order, in a directory or hub repository.
pub const WEIGHT_FILES: &[&str] = &[
    "model.safetensors",
    "sam_vit_b_01ec64.safetensors",
    "sam_vit_l_0b3195.safetensors",
    "sam_vit_h_4b8939.safetensors",
    "mobile_sam.safetensors",
    "mobile_sam-tiny-vitt.safetensors",
];

/// SAM's image encoder: the ViT of SAM or MobileSAM's TinyViT. Both map normalised, padded
/// pixels `(B, 3, S, S)` to embeddings `(B, D, g, g)`.
#[derive(Debug, Clone)]
pub enum ImageEncoder {
    /// SAM's ViT-B/L/H.
    ViT(Box<ImageEncoderViT>),
    /// MobileSAM's TinyViT.
    TinyViT(Box<TinyViT>),
}

impl ImageEncoder {
    /// Builds the encoder `config` asks for from `vb` (`image_encoder.*`).
    pub fn new(config: &SamConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(match &config.tiny_vit_config {
            Some(t) => Self::TinyViT(Box::new(TinyViT::new(t, vb)?)),
            None => Self::ViT(Box::new(ImageEncoderViT::new(&config.vision_config, vb)?)),
        })
    }

    /// The arithmetic of the encoder's products on the CPU in f32 (see
    /// [`ImageEncoderViT::set_cpu_matmul`]); whether bf16 is on. TinyViT keeps f32 (`false`).
    pub fn set_cpu_matmul(
        &mut self,
        mode: segany_core::nn::CpuMatmul,
    ) -> candle_core::Result<bool> {
        match self {
            Self::ViT(e) => e.set_cpu_matmul(mode),
            Self::TinyViT(_) => Ok(false),
        }
    }

    /// Which encoder this is.
    pub fn kind(&self) -> EncoderKind {
        match self {
            Self::ViT(_) => EncoderKind::ViT,
            Self::TinyViT(_) => EncoderKind::TinyViT,
        }
    }
}

impl Module for ImageEncoder {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::ViT(e) => e.forward(x),
            Self::TinyViT(e) => e.forward(x),
        }
    }
}

/// Checkpoint entries a TinyViT model never reads: BatchNorm step counters and the unused
/// ImageNet classification head that `mobile_sam.pt` carries.
fn tiny_vit_unused(key: &str) -> bool {
    key.ends_with(".num_batches_tracked")
        || key.starts_with("image_encoder.norm_head.")
        || key.starts_with("image_encoder.head.")
}

/// The Segment Anything model (SAM, or MobileSAM with a TinyViT encoder).
#[derive(Debug, Clone)]
pub struct Sam {
    /// The image encoder (ViT or TinyViT).
    pub image_encoder: ImageEncoder,
    /// The prompt encoder.
    pub prompt_encoder: PromptEncoder,
    /// The mask decoder.
    pub mask_decoder: MaskDecoder,
    dense_pe: Tensor,
    config: SamConfig,
}

impl Sam {
    /// Builds the model from a `VarBuilder` holding canonical (Meta) names.
    pub fn new(config: &SamConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        config.validate().map_err(candle_core::Error::msg)?;
        let image_encoder = ImageEncoder::new(config, vb.pp("image_encoder"))?;
        let prompt_encoder =
            PromptEncoder::new(&config.prompt_encoder_config, vb.pp("prompt_encoder"))?;
        let mask_decoder = MaskDecoder::new(&config.mask_decoder_config, vb.pp("mask_decoder"))?;
        let dense_pe = prompt_encoder.get_dense_pe()?;
        Ok(Self {
            image_encoder,
            prompt_encoder,
            mask_decoder,
            dense_pe,
            config: config.clone(),
        })
    }

    /// Loads SAM from a hub repo id (`facebook/sam-vit-base`, optionally `@revision`), a local
    /// directory or a `.safetensors` file. The key layout (transformers or Meta) is detected
    /// from the tensor names; without `config.json` the configuration is inferred from the
    /// tensor shapes, MobileSAM's TinyViT encoder included (`mobile_sam.pt` converted to
    /// safetensors, or candle's `mobile_sam-tiny-vitt.safetensors`). Weights stored in
    /// f16/bf16 are converted to `dtype`.
    pub fn load(source: &str, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_from(&CheckpointSource::parse(source)?, device, dtype)
    }

    /// [`Sam::load`] from a parsed [`CheckpointSource`].
    pub fn load_from(source: &CheckpointSource, device: &Device, dtype: DType) -> Result<Self> {
        let resolved = source.resolve(WEIGHT_FILES)?;
        let store = TensorStore::load(&resolved.weights)?;
        let config = match &resolved.config {
            Some(path) => Some(SamConfig::from_json_file(path)?),
            None => None,
        };
        Self::from_store(store, config, device, dtype)
    }

    /// Builds the model from tensors in either layout. `config: None` infers it from shapes.
    ///
    /// bf16 weights on the CPU are refused (candle has no CPU bf16 matrix product): load f32
    /// there and opt into bf16 products with [`Sam::set_cpu_matmul`].
    pub fn from_store(
        store: TensorStore,
        config: Option<SamConfig>,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        if device.is_cpu() && dtype == DType::BF16 {
            return Err(Error::InvalidArgument(
                "bf16 weights on the CPU: candle has no CPU bf16 matrix product; load f32 (or \
                 f16) and use Sam::set_cpu_matmul(CpuMatmul::Bf16) for bf16 products"
                    .into(),
            ));
        }
        let layout = SamLayout::detect(store.keys())?;
        let iou_depth = config.as_ref().map_or_else(
            || {
                // The transformers IoU head has proj_in, layers.*, proj_out.
                let inner = store
                    .keys()
                    .iter()
                    .filter(|k| {
                        k.starts_with("mask_decoder.iou_prediction_head.layers.")
                            && k.ends_with(".weight")
                    })
                    .count();
                if layout == SamLayout::Transformers {
                    inner + 2
                } else {
                    inner
                }
            },
            |c| c.mask_decoder_config.iou_head_depth,
        );
        let store = store.rename(|k| Some(layout.to_canonical(k, iou_depth)));
        let config = match config {
            Some(c) => c,
            None => SamConfig::infer_from_tensors(&store)?,
        };
        config
            .validate()
            .map_err(|reason| Error::Config { path: None, reason })?;
        let checked = CheckedVarBuilder::new(store, dtype, device);
        let built = Self::new(&config, checked.var_builder());
        let tiny = config.encoder_kind() == EncoderKind::TinyViT;
        checked.finish(built, |k| {
            k == "pixel_mean" || k == "pixel_std" || (tiny && tiny_vit_unused(k))
        })
    }

    /// Which image encoder the model uses.
    pub fn encoder_kind(&self) -> EncoderKind {
        self.image_encoder.kind()
    }

    /// The arithmetic of the image encoder's products on the CPU in f32: with
    /// [`CpuMatmul::Bf16`](segany_core::nn::CpuMatmul::Bf16), the ViT blocks' `qkv`, `proj`,
    /// `lin1` and `lin2` round inputs and weights to bf16 and sum in f32 on CPUs with AVX-512
    /// BF16 (ViT-B at 1024² ≈ 0.7× the f32 time here; the embedding's largest difference from
    /// f32 ≈ 3% of its standard deviation, see the README). Returns whether bf16 is on (`false`
    /// on other CPUs, devices, dtypes, and for TinyViT). The prompt encoder and mask decoder
    /// keep f32.
    ///
    /// ```no_run
    /// use segany::core::nn::CpuMatmul;
    /// use segany::Sam;
    /// let mut sam = Sam::load("facebook/sam-vit-base", &candle_core::Device::Cpu, candle_core::DType::F32)?;
    /// if !sam.set_cpu_matmul(CpuMatmul::Bf16)? {
    ///     eprintln!("no AVX-512 BF16 here: the encoder stays f32");
    /// }
    /// # Ok::<(), segany::Error>(())
    /// ```
    pub fn set_cpu_matmul(&mut self, mode: segany_core::nn::CpuMatmul) -> Result<bool> {
        Ok(self.image_encoder.set_cpu_matmul(mode)?)
    }

    /// The configuration.
    pub fn config(&self) -> &SamConfig {
        &self.config
    }

    /// Side of the square encoder input (1024 for released models).
    pub fn image_size(&self) -> usize {
        self.config.vision_config.image_size
    }

    /// Side of the low-resolution mask grid (256 for released models).
    pub fn mask_input_size(&self) -> usize {
        self.config.prompt_encoder_config.mask_input_size()
    }

    /// Dense positional encoding of the embedding grid, `(1, D, g, g)` (cached).
    pub fn dense_pe(&self) -> &Tensor {
        &self.dense_pe
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.dense_pe.device()
    }

    /// The dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.dense_pe.dtype()
    }

    /// Encodes normalised, padded pixels `(B, 3, S, S)` into embeddings `(B, D, g, g)`.
    pub fn encode(&self, pixels: &Tensor) -> Result<Tensor> {
        let s = self.image_size();
        let dims = pixels.dims();
        if dims.len() != 4 || dims[1] != 3 || dims[2] != s || dims[3] != s {
            return Err(Error::InvalidArgument(format!(
                "encoder input must be (B, 3, {s}, {s}), got {dims:?}"
            )));
        }
        let pixels = pixels.to_device(self.device())?.to_dtype(self.dtype())?;
        Ok(self.image_encoder.forward(&pixels)?)
    }

    /// Runs the prompt encoder and mask decoder on an embedding `(1, D, g, g)`: returns
    /// low-resolution logits `(B, K, 4g, 4g)` and IoU predictions `(B, K)`, both f32.
    ///
    /// `points`: coordinates `(B, N, 2)` in the padded input frame and labels `(B, N)`;
    /// `boxes`: `(B, 4)`; `masks`: `(B, 1, 4g, 4g)` logits.
    pub fn decode(
        &self,
        embedding: &Tensor,
        points: Option<(&Tensor, &Tensor)>,
        boxes: Option<&Tensor>,
        masks: Option<&Tensor>,
        multimask_output: bool,
    ) -> Result<(Tensor, Tensor)> {
        let (sparse, dense) = self.prompt_encoder.forward(points, boxes, masks)?;
        let emb = embedding.to_dtype(self.dtype())?;
        let (low, iou) =
            self.mask_decoder
                .forward(&emb, &self.dense_pe, &sparse, &dense, multimask_output)?;
        Ok((low.to_dtype(DType::F32)?, iou.to_dtype(DType::F32)?))
    }

    /// The prompt-independent part of decoding on `embedding (1, D, g, g)` for prompts without
    /// mask inputs: the image tokens with the no-mask dense embedding and the first two-way
    /// block's projections of them ([`MaskDecoder::prepare`]). Prepare once per image, then
    /// [`Sam::decode_prepared`] per prompt (batch); [`crate::SamPredictor`] does this itself.
    pub fn prepare_decoder(&self, embedding: &Tensor) -> Result<PreparedImage> {
        let emb = embedding.to_dtype(self.dtype())?;
        let dense = self.prompt_encoder.no_mask_dense()?;
        Ok(self.mask_decoder.prepare(&emb, &self.dense_pe, &dense)?)
    }

    /// [`Sam::decode`] without mask inputs on a prepared image ([`Sam::prepare_decoder`]): the
    /// same logits `(B, K, 4g, 4g)` and IoU predictions `(B, K)`, f32.
    pub fn decode_prepared(
        &self,
        prepared: &PreparedImage,
        points: Option<(&Tensor, &Tensor)>,
        boxes: Option<&Tensor>,
        multimask_output: bool,
    ) -> Result<(Tensor, Tensor)> {
        let sparse = self.prompt_encoder.forward_sparse(points, boxes)?;
        let (low, iou) = self
            .mask_decoder
            .forward_prepared(prepared, &sparse, multimask_output)?;
        Ok((low.to_dtype(DType::F32)?, iou.to_dtype(DType::F32)?))
    }

    /// [`Sam::decode_prepared`] in two steps, for callers that keep only some masks: the
    /// two-way transformer and IoU head for every prompt here, the upscaled masks later with
    /// [`Sam::upscale_prepared`] for the prompts that need them (automatic mask generation
    /// upscales only prompts with a mask above its IoU threshold).
    pub fn decode_prepared_tokens(
        &self,
        prepared: &PreparedImage,
        points: Option<(&Tensor, &Tensor)>,
        boxes: Option<&Tensor>,
    ) -> Result<DecodedTokens> {
        let sparse = self.prompt_encoder.forward_sparse(points, boxes)?;
        Ok(self.mask_decoder.decode_tokens(prepared, &sparse)?)
    }

    /// The IoU predictions `(B, K)` of [`Sam::decode_prepared_tokens`]'s prompts, f32, for the
    /// official selection of mask tokens.
    pub fn prepared_iou(&self, tokens: &DecodedTokens, multimask_output: bool) -> Result<Tensor> {
        let (start, len) = self.mask_decoder.selected_tokens(multimask_output);
        Ok(tokens.iou().narrow(1, start, len)?.to_dtype(DType::F32)?)
    }

    /// Low-resolution logits `(P, K, 4g, 4g)`, f32, of the prompts `select` (indices into the
    /// batch of [`Sam::decode_prepared_tokens`], in that order; `None`: all). The same values
    /// as [`Sam::decode_prepared`] gives for those prompts.
    pub fn upscale_prepared(
        &self,
        prepared: &PreparedImage,
        tokens: &DecodedTokens,
        select: Option<&[usize]>,
        multimask_output: bool,
    ) -> Result<Tensor> {
        let masks =
            self.mask_decoder
                .upscale_selected_masks(prepared, tokens, select, multimask_output)?;
        Ok(masks.to_dtype(DType::F32)?)
    }

    /// [`Sam::upscale_prepared`] as values into `out` (row-major, resized, every value
    /// overwritten), returning the dimensions `(P, K, 4g, 4g)`: for callers that upscale batch
    /// after batch into the same memory (automatic mask generation).
    pub fn upscale_prepared_into(
        &self,
        prepared: &PreparedImage,
        tokens: &DecodedTokens,
        select: Option<&[usize]>,
        multimask_output: bool,
        out: &mut Vec<f32>,
    ) -> Result<(usize, usize, usize, usize)> {
        Ok(self.mask_decoder.upscale_selected_masks_into(
            prepared,
            tokens,
            select,
            multimask_output,
            out,
        )?)
    }
}
