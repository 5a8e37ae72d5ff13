//! `ConvTranspose2d(kernel 2, stride 2)` as one matrix product.
//!
//! With kernel = stride = 2 the output taps never overlap: every input pixel writes its own
//! 2×2 output block, `y[o, 2i+a, 2j+b] = Σ_c x[c, i, j]·w[c, o, a, b] + bias[o]`. That is a
//! `(pixels × C) @ (C × 4·O)` product followed by a reshuffle — the same sums as the
//! convolution, computed by the fast matmul instead of candle's generic CPU kernel.
//!
//! The layer works channels-last (`(B, H, W, C)` → `(B, 2H, 2W, O)`): the reshuffle then moves
//! contiguous runs of `2·O` values, where a channels-first layout would move pairs.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// A 2×2, stride-2 transposed convolution (`weight` `(C_in, C_out, 2, 2)`, `bias` `(C_out)`).
#[derive(Debug, Clone)]
pub struct ConvTranspose2x2 {
    weight: Tensor,
    bias: Tensor,
    out_channels: usize,
}

impl ConvTranspose2x2 {
    /// Loads `weight` and `bias` from `vb` (same names as `nn.ConvTranspose2d`).
    pub fn new(in_channels: usize, out_channels: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((in_channels, out_channels, 2, 2), "weight")?;
        let bias = vb.get(out_channels, "bias")?;
        // (C, O, a, b) -> (C, a, b, O): matmul columns ordered as the channels-last output.
        let weight = weight
            .permute((0, 2, 3, 1))?
            .contiguous()?
            .reshape((in_channels, 4 * out_channels))?;
        Ok(Self {
            weight,
            bias,
            out_channels,
        })
    }
}

impl ConvTranspose2x2 {
    /// The weight as one matrix `(C_in, 4·C_out)`, columns ordered `(a, b, o)`: input pixel
    /// `(i, j)` times it gives output pixels `(2i+a, 2j+b)`, channels last.
    pub fn matrix(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `(C_out)`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// Number of output channels.
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }
}

impl Module for ConvTranspose2x2 {
    /// Channels-last: `(B, H, W, C)` → `(B, 2H, 2W, O)`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, h, w, c) = x.dims4()?;
        let o = self.out_channels;
        x.contiguous()?
            .reshape((b * h * w, c))?
            .matmul(&self.weight)?
            // (B, H, W, a, b'·O) -> (B, H, a, W, b'·O) = (B, 2H, 2W, O)
            .reshape(vec![b, h, w, 2, 2 * o])?
            .permute(vec![0, 1, 3, 2, 4])?
            .contiguous()?
            .reshape((b, 2 * h, 2 * w, o))?
            .broadcast_add(&self.bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::{ConvTranspose2dConfig, VarMap};

    #[test]
    fn equals_candle_conv_transpose2d() -> Result<()> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let cfg = ConvTranspose2dConfig {
            stride: 2,
            padding: 0,
            output_padding: 0,
            dilation: 1,
        };
        let reference = candle_nn::conv_transpose2d(6, 5, 2, cfg, vb.pp("up"))?;
        let fast = ConvTranspose2x2::new(6, 5, vb.pp("up"))?;
        let x = Tensor::randn(0f32, 1.0, (2, 6, 3, 4), &dev)?;
        let nhwc = fast
            .forward(&x.permute((0, 2, 3, 1))?)?
            .permute((0, 3, 1, 2))?;
        let d = (reference.forward(&x)? - nhwc)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(d < 1e-5, "max diff {d}");
        Ok(())
    }
}
