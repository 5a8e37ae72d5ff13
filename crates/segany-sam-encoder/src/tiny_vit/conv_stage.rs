//! TinyViT's convolutional parts: the patch-embedding stem, MBConv blocks, patch merging.

use super::config::scaled;
use super::conv_bn::{Conv2dBN, ConvBnSpec};
use super::mbconv_bands::mbconv_bands;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::{is_cpu_f32, with_f32_values};

/// `PatchEmbed` (`patch_embed.seq.{0,2}`): two 3×3 stride-2 Conv2d_BN with GELU between,
/// `(B, C_in, S, S)` → `(B, dim, S/4, S/4)`.
#[derive(Debug, Clone)]
pub struct PatchEmbed {
    conv1: Conv2dBN,
    conv2: Conv2dBN,
}

impl PatchEmbed {
    /// Loads the stem (`vb` is `patch_embed`).
    pub fn new(in_channels: usize, dim: usize, bn_eps: f64, vb: VarBuilder) -> Result<Self> {
        let spec = |i, o| ConvBnSpec {
            in_channels: i,
            out_channels: o,
            kernel: 3,
            stride: 2,
            padding: 1,
            groups: 1,
        };
        let seq = vb.pp("seq");
        Ok(Self {
            conv1: Conv2dBN::new(spec(in_channels, dim / 2), bn_eps, seq.pp("0"))?,
            conv2: Conv2dBN::new(spec(dim / 2, dim), bn_eps, seq.pp("2"))?,
        })
    }
}

impl Module for PatchEmbed {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv2.forward(&self.conv1.forward_gelu(x)?)
    }
}

/// `MBConv` (`conv1`, `conv2`, `conv3`): 1×1 expand, GELU, depthwise 3×3, GELU, 1×1 project,
/// residual add, GELU. NCHW in and out.
#[derive(Debug, Clone)]
pub struct MBConv {
    conv1: Conv2dBN,
    conv2: Conv2dBN,
    conv3: Conv2dBN,
}

impl MBConv {
    /// Loads the block for `dim` channels expanded `expand_ratio` times (truncated as `int()`).
    pub fn new(dim: usize, expand_ratio: f64, bn_eps: f64, vb: VarBuilder) -> Result<Self> {
        let hidden = scaled(dim, expand_ratio);
        Ok(Self {
            conv1: Conv2dBN::new(ConvBnSpec::pointwise(dim, hidden), bn_eps, vb.pp("conv1"))?,
            conv2: Conv2dBN::new(ConvBnSpec::depthwise(hidden, 3, 1), bn_eps, vb.pp("conv2"))?,
            conv3: Conv2dBN::new(ConvBnSpec::pointwise(hidden, dim), bn_eps, vb.pp("conv3"))?,
        })
    }
}

impl Module for MBConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let (Some(conv1), Some(dw), Some(conv3), true) = (
            self.conv1.cpu_pointwise(),
            self.conv2.cpu_depthwise(),
            self.conv3.cpu_pointwise(),
            is_cpu_f32(x),
        ) {
            let dims = x.dims4()?;
            let out = with_f32_values(x, |v| mbconv_bands(v, dims, conv1, dw, conv3))?;
            return Tensor::from_vec(out, dims, x.device());
        }
        let y = self.conv1.forward_gelu(x)?;
        let y = self.conv2.forward_gelu(&y)?;
        self.conv3.forward_add_gelu(&y, x)
    }
}

/// `PatchMerging` (`downsample.conv{1,2,3}`): 1×1, GELU, depthwise 3×3 (stride
/// [`super::TinyViTConfig::merge_stride`]), GELU, 1×1. Takes NCHW, returns NCHW.
#[derive(Debug, Clone)]
pub struct PatchMerging {
    conv1: Conv2dBN,
    conv2: Conv2dBN,
    conv3: Conv2dBN,
}

impl PatchMerging {
    /// Loads the merging from `dim` to `out_dim` channels with the given depthwise stride.
    pub fn new(
        dim: usize,
        out_dim: usize,
        stride: usize,
        bn_eps: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            conv1: Conv2dBN::new(ConvBnSpec::pointwise(dim, out_dim), bn_eps, vb.pp("conv1"))?,
            conv2: Conv2dBN::new(
                ConvBnSpec::depthwise(out_dim, 3, stride),
                bn_eps,
                vb.pp("conv2"),
            )?,
            conv3: Conv2dBN::new(
                ConvBnSpec::pointwise(out_dim, out_dim),
                bn_eps,
                vb.pp("conv3"),
            )?,
        })
    }
}

impl Module for PatchMerging {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv1.forward_gelu(x)?;
        let y = self.conv2.forward_gelu(&y)?;
        self.conv3.forward(&y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny_vit::test_util::{build_as, random_tensors};
    use candle_core::{DType, Device};

    /// The CPU kernels (1×1 product with bias, residual and GELU in one pass; depthwise with
    /// its GELU) against the f64 composition of the same layers, for MBConv, PatchMerging
    /// (stride 2) and the stem.
    #[test]
    fn fused_convolutions_match_the_composition() -> Result<()> {
        fn check<M: Module>(build: impl Fn(VarBuilder) -> Result<M>, x: &Tensor) -> Result<()> {
            let tensors = random_tensors(&build);
            let got = build_as(&tensors, DType::F32, &build)?
                .forward(x)?
                .to_dtype(DType::F64)?;
            let want = build_as(&tensors, DType::F64, &build)?.forward(&x.to_dtype(DType::F64)?)?;
            assert_eq!(got.dims(), want.dims());
            let d: f64 = (got - &want)?.abs()?.max_all()?.to_scalar()?;
            let scale: f64 = want.abs()?.max_all()?.to_scalar()?;
            assert!(d < 1e-5 * scale.max(1.0), "max |Δ| {d:e} (scale {scale})");
            Ok(())
        }
        let x = Tensor::randn(0f32, 1.0, (2, 8, 9, 7), &Device::Cpu)?;
        check(|vb| MBConv::new(8, 4.0, 1e-5, vb), &x)?;
        check(|vb| PatchMerging::new(8, 12, 2, 1e-5, vb), &x)?;
        let img = Tensor::randn(0f32, 1.0, (1, 3, 16, 12), &Device::Cpu)?;
        check(|vb| PatchEmbed::new(3, 8, 1e-5, vb), &img)?;
        Ok(())
    }

    /// MBConv in bands of rows equals the layer-by-layer kernels, for a batch of one and of
    /// two, on 1 to 3 threads (runs of rows that start mid-image, bands cut short at the end
    /// of a run, images shorter than a band).
    #[test]
    fn mbconv_bands_match_the_layers() -> Result<()> {
        let build = |vb: VarBuilder| MBConv::new(6, 4.0, 1e-5, vb);
        let block = build_as(&random_tensors(build), DType::F32, build)?;
        for (dims, threads) in [
            ((1, 6, 37, 5), 3),
            ((2, 6, 21, 9), 3),
            ((1, 6, 3, 4), 2),
            ((2, 6, 17, 3), 1),
        ] {
            let x = Tensor::randn(0f32, 1.0, dims, &Device::Cpu)?;
            let layers = block.conv3.forward_add_gelu(
                &block.conv2.forward_gelu(&block.conv1.forward_gelu(&x)?)?,
                &x,
            )?;
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(candle_core::Error::wrap)?;
            let bands = pool.install(|| block.forward(&x))?;
            assert_eq!(bands.dims(), layers.dims());
            let d: f32 = (bands - &layers)?.abs()?.max_all()?.to_scalar()?;
            assert!(d <= 1e-6, "{dims:?} on {threads} threads: max |Δ| {d:e}");
        }
        Ok(())
    }
}
