//! SAM's encoder neck (`image_encoder.neck`), shared by the ViT and TinyViT encoders.

use crate::dense_conv::DenseConv;
use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};
use segany_core::nn::{
    is_cpu_f32, layer_norm_2d, transpose_into, with_f32_values, Activation, LayerNorm2d, Linear,
};

/// `Conv1×1 → LayerNorm2d → Conv3×3 → LayerNorm2d`, no biases, eps 1e-6: `(B, C_in, g, g)` →
/// `(B, C_out, g, g)`. Keys `neck.0` … `neck.3`.
#[derive(Debug, Clone)]
pub struct Neck {
    conv1: Conv2d,
    ln1: LayerNorm2d,
    conv2: Conv2d,
    ln2: LayerNorm2d,
    /// Host copies of the two convolutions for the CPU kernel (f32 weights on the CPU).
    dense: Option<(DenseConv, DenseConv)>,
    /// The 1×1 convolution as a linear layer over channels-last tokens (f32 on the CPU).
    conv1_tokens: Option<Linear>,
}

impl Neck {
    /// Loads the neck from `vb` (the encoder's `vb.pp("neck")`).
    pub fn new(in_channels: usize, out_channels: usize, vb: VarBuilder) -> Result<Self> {
        let (i, o) = (in_channels, out_channels);
        let conv3 = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let conv1 = candle_nn::conv2d_no_bias(i, o, 1, Default::default(), vb.pp("0"))?;
        let conv2 = candle_nn::conv2d_no_bias(o, o, 3, conv3, vb.pp("2"))?;
        let w = conv1.weight();
        let (dense, conv1_tokens) = if is_cpu_f32(w) {
            (
                Some((
                    DenseConv::new(w, None, 1, 0)?,
                    DenseConv::new(conv2.weight(), None, 1, 1)?,
                )),
                Some(Linear::new(w.reshape((o, i))?, None)),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            conv1,
            ln1: layer_norm_2d(o, 1e-6, vb.pp("1"))?,
            conv2,
            ln2: layer_norm_2d(o, 1e-6, vb.pp("3"))?,
            dense,
            conv1_tokens,
        })
    }

    /// [`Module::forward`] of channels-last tokens: `(B, g, g, C_in)` → `(B, C_out, g, g)`,
    /// the values of `forward` on the tokens permuted to `(B, C_in, g, g)`. On the CPU in f32
    /// the 1×1 convolution multiplies the tokens where they lie and its norm runs over their
    /// rows, so only its `C_out`-channel result is transposed, instead of the `C_in`-channel
    /// input; elsewhere this permutes and calls `forward`.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use candle_nn::{VarBuilder, VarMap};
    /// use segany_sam_encoder::Neck;
    /// let varmap = VarMap::new();
    /// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let neck = Neck::new(16, 8, vb)?; // SAM ViT-B: Neck::new(768, 256, ..)
    /// let tokens = Tensor::zeros((1, 5, 5, 16), DType::F32, &Device::Cpu)?;
    /// assert_eq!(neck.forward_tokens(&tokens)?.dims(), [1, 8, 5, 5]);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn forward_tokens(&self, x: &Tensor) -> Result<Tensor> {
        let (Some((_, c2)), Some(c1), true) = (&self.dense, &self.conv1_tokens, is_cpu_f32(x))
        else {
            return self.forward(&x.permute((0, 3, 1, 2))?.contiguous()?);
        };
        let (b, h, w, _) = x.dims4()?;
        let (rows, o) = (h * w, c1.weight().dim(0)?);
        let mut y = vec![0f32; b * rows * o];
        with_f32_values(x, |xv| {
            c1.forward_into(xv, b * rows, Activation::Identity, None, &mut y)
        })?;
        let mut z = vec![0f32; y.len()];
        self.ln1.as_layer_norm().forward_into(&y, &mut z)?;
        if rows > 0 {
            for (src, dst) in z.chunks_exact(rows * o).zip(y.chunks_exact_mut(rows * o)) {
                transpose_into(src, dst, rows, o);
            }
        }
        let y = Tensor::from_vec(y, (b, o, h, w), x.device())?;
        self.ln2.forward(&c2.forward(&y, false)?)
    }
}

impl Module for Neck {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let (Some((c1, c2)), true) = (&self.dense, is_cpu_f32(x)) {
            let y = self.ln1.forward(&c1.forward(x, false)?)?;
            return self.ln2.forward(&c2.forward(&y, false)?);
        }
        x.contiguous()?
            .apply(&self.conv1)?
            .apply(&self.ln1)?
            .apply(&self.conv2)?
            .apply(&self.ln2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    /// The channels-last path against `forward` of the permuted tokens and against the plain
    /// composition in f64 (candle's convolutions, the permuting norm): two images on a grid
    /// of 9 × 7.
    #[test]
    fn tokens_match_forward() -> Result<()> {
        let dev = Device::Cpu;
        let (ci, co) = (40usize, 24usize);
        let varmap = VarMap::new();
        Neck::new(ci, co, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
        for var in varmap.all_vars() {
            var.set(&Tensor::randn(0f32, 0.3, var.shape(), &dev)?.affine(1.0, 0.2)?)?;
        }
        // Built after the weights are set: `Linear` copies its weight at build time.
        let neck = Neck::new(ci, co, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
        let weights64 = varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("varmap lock poisoned".into()))?
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.to_dtype(DType::F64)?)))
            .collect::<Result<_>>()?;
        let neck64 = Neck::new(
            ci,
            co,
            VarBuilder::from_tensors(weights64, DType::F64, &dev),
        )?;
        assert!(neck.conv1_tokens.is_some(), "f32 layer");
        assert!(neck64.conv1_tokens.is_none(), "f64 layer");
        let tokens = Tensor::randn(0f32, 1.0, (2, 9, 7, ci), &dev)?;
        let nchw = tokens.permute((0, 3, 1, 2))?.contiguous()?;
        let ours = neck.forward_tokens(&tokens)?;
        assert_eq!(ours.dims(), [2, co, 9, 7]);
        let max_diff = |a: &Tensor, b: &Tensor| -> Result<f64> {
            (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?
                .abs()?
                .max_all()?
                .to_scalar::<f64>()
        };
        let d = max_diff(&ours, &neck.forward(&nchw)?)?;
        assert!(d < 1e-5, "against forward: {d}");
        let reference = neck64.forward(&nchw.to_dtype(DType::F64)?)?;
        let d = max_diff(&ours, &reference)?;
        assert!(d < 1e-4, "against the f64 composition: {d}");
        Ok(())
    }
}
