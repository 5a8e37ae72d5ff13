//! Bilinear resizing of NCHW tensors (`align_corners=False`, no antialiasing), computed as
//! PyTorch's CPU kernel does: f32 weights from `scale = in / out`,
//! `src = max(scale·(i + 0.5) − 0.5, 0)`, and `(x00·w0 + x01·w1)·h0 + (x10·w0 + x11·w1)·h1`.
//! Rows are processed in parallel; non-CPU devices use candle's `upsample_bilinear2d`.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Source indices and weights along one axis: `(i0, i1, w0, w1)` per output position.
fn axis(input: usize, output: usize) -> Vec<(usize, usize, f32, f32)> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|o| {
            let real = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (real as usize).min(input - 1);
            let lambda = (real - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 + 1 < input { i0 + 1 } else { i0 };
            (i0, i1, 1.0 - lambda, lambda)
        })
        .collect()
}

struct Bilinear {
    out_h: usize,
    out_w: usize,
    /// Rows and columns of the output actually produced (its top-left corner).
    keep_h: usize,
    keep_w: usize,
}

impl CustomOp1 for Bilinear {
    fn name(&self) -> &'static str {
        "bilinear-resize"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let src = match (s, l.contiguous_offsets()) {
            (CpuStorage::F32(v), Some((a, e))) => &v[a..e],
            _ => candle_core::bail!("bilinear-resize: expects a contiguous f32 tensor"),
        };
        let (oh, ow) = (self.keep_h, self.keep_w);
        let mut ys = axis(h, self.out_h);
        let mut xs = axis(w, self.out_w);
        ys.truncate(oh);
        xs.truncate(ow);
        let mut dst = vec![0f32; b * c * oh * ow];
        if dst.is_empty() {
            return Ok((CpuStorage::F32(dst), Shape::from_dims(&[b, c, oh, ow])));
        }
        dst.par_chunks_mut(ow).enumerate().for_each(|(row, out)| {
            let plane = row / oh;
            let (y0, y1, h0, h1) = ys[row % oh];
            let base = plane * h * w;
            let r0 = &src[base + y0 * w..base + (y0 + 1) * w];
            let r1 = &src[base + y1 * w..base + (y1 + 1) * w];
            for (o, &(x0, x1, w0, w1)) in out.iter_mut().zip(&xs) {
                *o = (r0[x0] * w0 + r0[x1] * w1) * h0 + (r1[x0] * w0 + r1[x1] * w1) * h1;
            }
        });
        Ok((CpuStorage::F32(dst), Shape::from_dims(&[b, c, oh, ow])))
    }
}

/// Resizes `(B, C, H, W)` to `(B, C, out_h, out_w)` bilinearly (`align_corners=False`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[[[[0f32, 4.]]]], &Device::Cpu).unwrap();
/// let y = segany_core::nn::resize_bilinear(&x, 1, 4).unwrap();
/// assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![0., 1., 3., 4.]);
/// ```
pub fn resize_bilinear(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if (h, w) == (out_h, out_w) {
        return x.contiguous();
    }
    resize_bilinear_crop(x, out_h, out_w, out_h, out_w)
}

/// The top-left `keep_h × keep_w` corner of [`resize_bilinear`]`(x, out_h, out_w)`, without
/// computing the rest (SAM's upsampling of padded logits followed by the crop of the padding).
pub fn resize_bilinear_crop(
    x: &Tensor,
    out_h: usize,
    out_w: usize,
    keep_h: usize,
    keep_w: usize,
) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if keep_h > out_h || keep_w > out_w {
        candle_core::bail!("resize: crop {keep_h}×{keep_w} exceeds the output {out_h}×{out_w}")
    }
    if x.device().is_cpu() && x.dtype() == DType::F32 && h > 0 && w > 0 {
        x.contiguous()?.apply_op1_no_bwd(&Bilinear {
            out_h,
            out_w,
            keep_h,
            keep_w,
        })
    } else {
        x.upsample_bilinear2d(out_h, out_w, false)?
            .narrow(2, 0, keep_h)?
            .narrow(3, 0, keep_w)?
            .contiguous()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_candle_kernel() -> Result<()> {
        let x = Tensor::randn(0f32, 1.0, (2, 3, 7, 9), &candle_core::Device::Cpu)?;
        for (oh, ow) in [(28, 36), (5, 4), (7, 20), (1, 1)] {
            let a = resize_bilinear(&x, oh, ow)?;
            let b = x.upsample_bilinear2d(oh, ow, false)?;
            let d = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert!(d < 1e-5, "{oh}x{ow}: {d}");
        }
        Ok(())
    }

    #[test]
    fn crop_is_the_corner_of_the_full_resize() -> Result<()> {
        let x = Tensor::randn(0f32, 1.0, (2, 3, 7, 9), &candle_core::Device::Cpu)?;
        let full = resize_bilinear(&x, 28, 36)?;
        let corner = resize_bilinear_crop(&x, 28, 36, 20, 31)?;
        let expect = full.narrow(2, 0, 20)?.narrow(3, 0, 31)?;
        let d = (corner - expect)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert_eq!(d, 0.0);
        assert!(resize_bilinear_crop(&x, 28, 36, 29, 36).is_err());
        Ok(())
    }
}
