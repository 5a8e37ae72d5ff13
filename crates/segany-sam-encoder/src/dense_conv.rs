//! Dense (`groups = 1`) 2-D convolutions on the CPU in f32, as products over bands of output
//! rows.
//!
//! candle's CPU `conv2d` unfolds the whole input at once (for the neck's 3×3 convolution of 256
//! channels on 64×64 that is a 38 MB matrix), multiplies it into `(B, H·W, C_out)` and copies
//! that to `(B, C_out, H, W)`. Here the unfolded columns of a band of output rows stay within a
//! few megabytes, the product writes the `(C_out, H·W)` layout directly, and the bias and an
//! optional GELU run on each output channel's row afterwards. A 1×1 convolution with stride 1
//! multiplies the input in place, without unfolding.

use candle_core::{Device, Result, Tensor};
use rayon::prelude::*;
use segany_core::nn::{gelu_erf_in_place, matmul_into, with_f32_values, MatRef};

/// Values of unfolded input per band (2 MB of f32).
const BAND_VALUES: usize = 1 << 19;

/// A convolution's host weights and geometry.
#[derive(Debug, Clone)]
pub(crate) struct DenseConv {
    /// `(C_out, C_in·k·k)` row-major (PyTorch's `(C_out, C_in, k, k)` flattened).
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl DenseConv {
    /// From an f32 `(C_out, C_in, k, k)` weight and an optional `(C_out)` bias.
    pub(crate) fn new(
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let (out_channels, in_channels, kh, kw) = weight.dims4()?;
        if kh != kw || stride == 0 {
            candle_core::bail!(
                "dense convolution: kernel {kh}×{kw}, stride {stride} (square kernels, stride ≥ 1)"
            );
        }
        let bias = match bias {
            Some(b) if b.dims() != [out_channels] => {
                candle_core::bail!("dense convolution: bias {:?} for {out_channels}", b.dims())
            }
            Some(b) => Some(b.to_dtype(candle_core::DType::F32)?.to_vec1()?),
            None => None,
        };
        Ok(Self {
            weight: weight
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1()?,
            bias,
            in_channels,
            out_channels,
            kernel: kh,
            stride,
            padding,
        })
    }

    fn out_size(&self, n: usize) -> Result<usize> {
        (n + 2 * self.padding)
            .checked_sub(self.kernel)
            .map(|d| d / self.stride + 1)
            .ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "dense convolution: {n} pixels are fewer than the {}-wide kernel",
                    self.kernel
                ))
            })
    }

    /// `act(conv(x) + bias)` for `x (B, C_in, H, W)` f32 on the CPU; `act` is exact GELU when
    /// `gelu`.
    pub(crate) fn forward(&self, x: &Tensor, gelu: bool) -> Result<Tensor> {
        let (b, cin, h, w) = x.dims4()?;
        if cin != self.in_channels {
            candle_core::bail!(
                "dense convolution: {cin} input channels, expected {}",
                self.in_channels
            );
        }
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let (oh, ow) = (self.out_size(h)?, self.out_size(w)?);
        let (cout, kk, ohw) = (self.out_channels, cin * k * k, oh * ow);
        let mut out = vec![0f32; b * cout * ohw];
        let weight = MatRef::row_major(&self.weight, cout, kk)?;
        with_f32_values(x, |xv| {
            for (img, dst) in xv
                .chunks_exact(cin * h * w)
                .zip(out.chunks_exact_mut(cout * ohw))
            {
                if k == 1 && s == 1 && p == 0 {
                    let x = MatRef::row_major(img, cin, h * w)?;
                    matmul_into(dst, ohw, weight, x, 1.0, true)?;
                    continue;
                }
                let rows = (BAND_VALUES / (kk * ow).max(1)).clamp(1, oh);
                let mut col = vec![0f32; kk * rows * ow];
                for oy0 in (0..oh).step_by(rows) {
                    let oy1 = (oy0 + rows).min(oh);
                    let np = (oy1 - oy0) * ow;
                    // Row (ci, ky, kx) of the unfolded band: that tap of every output pixel.
                    col[..kk * np]
                        .par_chunks_mut(np)
                        .enumerate()
                        .for_each(|(r, taps)| {
                            let (ci, ky, kx) = (r / (k * k), r / k % k, r % k);
                            let plane = &img[ci * h * w..(ci + 1) * h * w];
                            for (i, seg) in taps.chunks_exact_mut(ow).enumerate() {
                                let iy = (oy0 + i) * s + ky;
                                if iy < p || iy - p >= h {
                                    seg.fill(0.0);
                                    continue;
                                }
                                let src = &plane[(iy - p) * w..(iy - p + 1) * w];
                                for (ox, v) in seg.iter_mut().enumerate() {
                                    let ix = ox * s + kx;
                                    *v = if ix < p || ix - p >= w {
                                        0.0
                                    } else {
                                        src[ix - p]
                                    };
                                }
                            }
                        });
                    let band = MatRef::row_major(&col[..kk * np], kk, np)?;
                    matmul_into(&mut dst[oy0 * ow..], ohw, weight, band, 1.0, true)?;
                }
            }
            Ok::<_, candle_core::Error>(())
        })?;
        if self.bias.is_some() || gelu {
            out.par_chunks_mut(ohw).enumerate().for_each(|(i, row)| {
                if let Some(bias) = &self.bias {
                    let b = bias[i % cout];
                    row.iter_mut().for_each(|v| *v += b);
                }
                if gelu {
                    gelu_erf_in_place(row);
                }
            });
        }
        Tensor::from_vec(out, (b, cout, oh, ow), &Device::Cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    /// Against candle's `conv2d` (+ bias, + `gelu_erf`) in f64: 1×1, 3×3 with padding and
    /// stride 1 and 2, odd sizes, bands smaller than the output (the neck's shape class).
    #[test]
    fn matches_candle_conv2d() -> Result<()> {
        let dev = Device::Cpu;
        for &(cin, cout, k, s, p, h, w, gelu) in &[
            (5, 7, 1, 1, 0, 6, 9, false),
            (3, 8, 3, 2, 1, 17, 12, true),
            (6, 4, 3, 1, 1, 9, 10, false),
            (300, 9, 3, 1, 1, 40, 45, false),
        ] {
            let x = Tensor::randn(0f32, 1.0, (2, cin, h, w), &dev)?;
            let wt = Tensor::randn(0f32, 0.3, (cout, cin, k, k), &dev)?;
            let b = Tensor::randn(0f32, 1.0, cout, &dev)?;
            let conv = DenseConv::new(&wt, Some(&b), s, p)?;
            let got = conv.forward(&x, gelu)?;
            let f64 = |t: &Tensor| t.to_dtype(DType::F64);
            let want = f64(&x)?
                .conv2d(&f64(&wt)?, p, s, 1, 1)?
                .broadcast_add(&f64(&b)?.reshape((1, cout, 1, 1))?)?;
            let want = if gelu { want.gelu_erf()? } else { want };
            assert_eq!(got.dims(), want.dims());
            let d: f64 = (got.to_dtype(DType::F64)? - &want)?
                .abs()?
                .max_all()?
                .to_scalar()?;
            let scale: f64 = want.abs()?.max_all()?.to_scalar()?;
            assert!(d < 1e-5 * scale.max(1.0), "{cin}→{cout} k{k} s{s}: {d:e}");
        }
        let wt = Tensor::zeros((4, 3, 3, 3), DType::F32, &dev)?;
        let conv = DenseConv::new(&wt, None, 1, 0)?;
        assert!(conv
            .forward(&Tensor::zeros((1, 2, 5, 5), DType::F32, &dev)?, false)
            .is_err());
        assert!(conv
            .forward(&Tensor::zeros((1, 3, 2, 5), DType::F32, &dev)?, false)
            .is_err());
        Ok(())
    }
}
