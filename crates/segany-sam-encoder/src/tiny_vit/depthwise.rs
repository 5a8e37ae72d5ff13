//! A direct CPU kernel for depthwise convolutions (one filter per channel).
//!
//! candle's `conv2d` with `groups = C` runs `C` separate single-channel convolutions (a chunk,
//! an im2col and a matmul each, then a concatenation); TinyViT's depthwise layers are better
//! served by a plain sliding-window loop, parallel over channel planes. Other devices and
//! dtypes fall back to candle's `conv2d`.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use segany_core::nn::gelu_erf_in_place;

/// A depthwise `k`×`k` convolution with per-channel bias, as a candle custom op (CPU, f32).
#[derive(Debug, Clone)]
pub(crate) struct Depthwise {
    /// `(C, k, k)` filters, row-major.
    pub weight: Vec<f32>,
    /// `(C,)` bias.
    pub bias: Vec<f32>,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Depthwise {
    fn out_size(&self, n: usize) -> usize {
        (n + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// One output plane from one input plane `h`×`w` of channel `c`.
    fn plane(&self, c: usize, src: &[f32], h: usize, w: usize, dst: &mut [f32]) {
        self.rows(c, src, (0, h, w), 0..self.out_size(h), dst);
    }

    /// Output rows `out_rows` of channel `c` of an `h`×`w` plane from the input rows held in
    /// `src`, the first of them being row `first` (every row the taps reach must be held):
    /// each value is its bias plus the taps in row-major order.
    pub(crate) fn rows(
        &self,
        c: usize,
        src: &[f32],
        geometry: (usize, usize, usize),
        out_rows: std::ops::Range<usize>,
        dst: &mut [f32],
    ) {
        depthwise_rows(self, c, src, geometry, out_rows, dst)
    }
}

segany_core::avx2_dispatch! {
    /// [`Depthwise::rows`], built for the CPU's vector width.
    fn depthwise_rows(
        conv: &Depthwise,
        c: usize,
        src: &[f32],
        geometry: (usize, usize, usize),
        out_rows: std::ops::Range<usize>,
        dst: &mut [f32],
    ) => depthwise_rows_loop
}

#[inline(always)]
fn depthwise_rows_loop(
    conv: &Depthwise,
    c: usize,
    src: &[f32],
    (first, h, w): (usize, usize, usize),
    out_rows: std::ops::Range<usize>,
    dst: &mut [f32],
) {
    let (k, s, p) = (conv.kernel, conv.stride, conv.padding);
    let ow = conv.out_size(w);
    let filt = &conv.weight[c * k * k..(c + 1) * k * k];
    dst.fill(conv.bias[c]);
    for (oy, row) in out_rows.zip(dst.chunks_exact_mut(ow)) {
        for ky in 0..k {
            let iy = oy * s + ky;
            if iy < p || iy - p >= h {
                continue;
            }
            let at = (iy - p - first) * w;
            let src_row = &src[at..at + w];
            for kx in 0..k {
                let wv = filt[ky * k + kx];
                // Output columns whose input column ox·s + kx − p lies inside the row.
                let lo = p.saturating_sub(kx).div_ceil(s);
                let hi = ((w + p).saturating_sub(kx)).div_ceil(s).min(ow);
                if lo >= hi {
                    continue;
                }
                if s == 1 {
                    let off = lo + kx - p;
                    let inp = &src_row[off..off + (hi - lo)];
                    for (o, &x) in row[lo..hi].iter_mut().zip(inp) {
                        *o += wv * x;
                    }
                } else {
                    for (ox, o) in row.iter_mut().enumerate().take(hi).skip(lo) {
                        *o += wv * src_row[ox * s + kx - p];
                    }
                }
            }
        }
    }
}

impl Depthwise {
    /// The convolution of channels-last tokens `x (B, H·W, C)` of an `h`×`w` grid, returning
    /// `(B, H'·W', C)` values: each output pixel is its bias plus the taps in the same order
    /// as [`Depthwise::plane`] (so the same values), vectorised across the channels, parallel
    /// over output rows. TinyViT's blocks hold tokens channels-last; this spares the two
    /// transposes around an NCHW convolution.
    pub(crate) fn forward_tokens(
        &self,
        x: &[f32],
        (b, h, w, c): (usize, usize, usize, usize),
    ) -> Result<Vec<f32>> {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        if c * k * k != self.weight.len() || c != self.bias.len() || x.len() != b * h * w * c {
            candle_core::bail!(
                "depthwise kernel: {} values for a {b}×{h}×{w}×{c} grid and {} filters",
                x.len(),
                self.bias.len()
            );
        }
        // Filters as (k, k, C): one contiguous vector per tap.
        let mut taps = vec![0f32; k * k * c];
        for ch in 0..c {
            for t in 0..k * k {
                taps[t * c + ch] = self.weight[ch * k * k + t];
            }
        }
        let (oh, ow) = (self.out_size(h), self.out_size(w));
        let mut out = vec![0f32; b * oh * ow * c];
        out.par_chunks_mut(ow * c).enumerate().for_each(|(r, row)| {
            let (img, oy) = (r / oh, r % oh);
            let src = &x[img * h * w * c..(img + 1) * h * w * c];
            for (ox, px) in row.chunks_exact_mut(c).enumerate() {
                px.copy_from_slice(&self.bias);
                for ky in 0..k {
                    let iy = oy * s + ky;
                    if iy < p || iy - p >= h {
                        continue;
                    }
                    for kx in 0..k {
                        let ix = ox * s + kx;
                        if ix < p || ix - p >= w {
                            continue;
                        }
                        let at = ((iy - p) * w + ix - p) * c;
                        let tap = &taps[(ky * k + kx) * c..(ky * k + kx + 1) * c];
                        for ((o, &v), &wt) in px.iter_mut().zip(&src[at..at + c]).zip(tap) {
                            *o += wt * v;
                        }
                    }
                }
            }
        });
        Ok(out)
    }
}

/// [`Depthwise`] as a candle custom op, with an optional exact GELU on each output plane
/// while it is in cache.
struct DepthwiseOp<'a> {
    conv: &'a Depthwise,
    gelu: bool,
}

impl CustomOp1 for DepthwiseOp<'_> {
    fn name(&self) -> &'static str {
        "tiny-vit-depthwise-conv"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("depthwise kernel: f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("depthwise kernel: input must be contiguous");
        };
        let (b, c, h, w) = layout.shape().dims4()?;
        let conv = self.conv;
        if c * conv.kernel * conv.kernel != conv.weight.len() || c != conv.bias.len() {
            candle_core::bail!(
                "depthwise kernel: {c} channels for {} filters",
                conv.bias.len()
            );
        }
        let src = &data[start..end];
        let (oh, ow) = (conv.out_size(h), conv.out_size(w));
        let mut out = vec![0f32; b * c * oh * ow];
        out.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(i, dst)| {
                conv.plane(i % c, &src[i * h * w..(i + 1) * h * w], h, w, dst);
                if self.gelu {
                    gelu_erf_in_place(dst);
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, c, oh, ow))))
    }
}

/// Applies `op` (then exact GELU when `gelu`) on CPU f32 tensors; elsewhere
/// `x.conv2d(weight) + bias` (and `gelu_erf`) with candle.
pub(crate) fn depthwise_conv(
    x: &Tensor,
    op: &Depthwise,
    (weight, bias): (&Tensor, &Tensor),
    gelu: bool,
) -> Result<Tensor> {
    if segany_core::nn::is_cpu_f32(x) {
        return x
            .contiguous()?
            .apply_op1_no_bwd(&DepthwiseOp { conv: op, gelu });
    }
    let groups = x.dim(1)?;
    let y = x
        .conv2d(weight, op.padding, op.stride, 1, groups)?
        .broadcast_add(bias)?;
    if gelu {
        y.gelu_erf()
    } else {
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn matches_candle_conv2d() {
        let dev = Device::Cpu;
        for (k, s, h, w) in [(3, 1, 9, 7), (3, 2, 9, 7), (3, 2, 8, 8), (5, 1, 4, 6)] {
            let c = 3;
            let x = Tensor::randn(0f32, 1.0, (2, c, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1.0, (c, 1, k, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, c, &dev).unwrap();
            let op = Depthwise {
                weight: wt.flatten_all().unwrap().to_vec1().unwrap(),
                bias: b.to_vec1().unwrap(),
                kernel: k,
                stride: s,
                padding: k / 2,
            };
            let ours = x
                .apply_op1_no_bwd(&DepthwiseOp {
                    conv: &op,
                    gelu: false,
                })
                .unwrap();
            assert!(op.forward_tokens(&[0.0; 5], (1, h, w, c)).is_err());
            let reference = x
                .conv2d(&wt, k / 2, s, 1, c)
                .unwrap()
                .broadcast_add(&b.reshape((1, c, 1, 1)).unwrap())
                .unwrap();
            assert_eq!(ours.dims(), reference.dims());
            let d = (&ours - reference)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d < 1e-5, "k{k} s{s} {h}x{w}: max diff {d}");
            // Channels-last tokens: the same values as the NCHW planes.
            let channels_last = |t: &Tensor| -> Vec<f32> {
                t.permute((0, 2, 3, 1))
                    .and_then(|t| t.flatten_all()?.to_vec1())
                    .expect("channels-last values")
            };
            let nhwc = op.forward_tokens(&channels_last(&x), (2, h, w, c)).unwrap();
            assert_eq!(
                nhwc,
                channels_last(&ours),
                "k{k} s{s} {h}x{w}: channels-last"
            );
        }
    }
}
