//! Bilinear resizing of NCHW tensors (`align_corners=False`, no antialiasing), computed as
//! PyTorch's CPU kernel does: f32 weights from `scale = in / out`,
//! `src = max(scale·(i + 0.5) − 0.5, 0)`, and `(x00·w0 + x01·w1)·h0 + (x10·w0 + x11·w1)·h1`.
//! Bands of rows are processed in parallel; non-CPU devices use candle's `upsample_bilinear2d`.

use super::bilinear_row::{RowTaps, Tap};
use super::{is_cpu_f32, Scratch};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Source indices and weights along one axis: `(i0, i1, w0, w1)` per output position.
pub(super) fn axis(input: usize, output: usize) -> Vec<Tap> {
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

/// Output rows per parallel task of the CPU kernel.
const BAND_ROWS: usize = 32;

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
        let mut dst = vec![0f32; b * c * oh * ow];
        resize_bilinear_crop_into(src, (h, w), (self.out_h, self.out_w), (oh, ow), &mut dst)?;
        Ok((CpuStorage::F32(dst), Shape::from_dims(&[b, c, oh, ow])))
    }
}

/// [`resize_bilinear_crop`] on values: `src` holds planes of `h × w` values, `dst` receives
/// each plane's top-left `keep_h × keep_w` corner of its resize to `out_h × out_w` (every value
/// overwritten). For callers that reuse the output's memory (fresh pages cost the kernel a
/// fault and a zeroing per 4 KiB on first write).
///
/// ```
/// let mut dst = [9f32; 4];
/// segany_core::nn::resize_bilinear_crop_into(&[0., 4.], (1, 2), (1, 4), (1, 4), &mut dst)?;
/// assert_eq!(dst, [0., 1., 3., 4.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn resize_bilinear_crop_into(
    src: &[f32],
    (h, w): (usize, usize),
    (out_h, out_w): (usize, usize),
    (keep_h, keep_w): (usize, usize),
    dst: &mut [f32],
) -> Result<()> {
    let Some(plan) = Plan::new(src, (h, w), (out_h, out_w), (keep_h, keep_w), dst.len())? else {
        return Ok(());
    };
    dst.par_chunks_mut(plan.plane_len())
        .enumerate()
        .for_each(|(plane, out_plane)| {
            out_plane
                .par_chunks_mut(BAND_ROWS * plan.ow())
                .enumerate()
                .for_each(|(band, out)| plan.band(src, plane, band, out));
        });
    Ok(())
}

/// [`resize_bilinear_crop_into`] handing each band of output rows to `f` instead of storing
/// the values: `f(values, out)` gets a band's resized values (whole rows of the kept corner)
/// and the part of `dst` at the same positions, to fill as it likes (e.g. a binary mask), while
/// the values are still in the cache. Returns what `f` returned, per plane, band by band from
/// the top; the bands' heights are the implementation's choice.
///
/// ```
/// // Count the resized values above 2 and store a mask of them.
/// let mut mask = [0u8; 4];
/// let counts = segany_core::nn::resize_bilinear_crop_map(
///     &[0., 4.],
///     (1, 2),
///     (1, 4),
///     (1, 4),
///     &mut mask,
///     |values, out| {
///         out.iter_mut().zip(values).for_each(|(o, &v)| *o = u8::from(v > 2.0));
///         values.iter().filter(|&&v| v > 2.0).count()
///     },
/// )?;
/// assert_eq!(mask, [0, 0, 1, 1]);
/// assert_eq!(counts.iter().map(|bands| bands.iter().sum::<usize>()).collect::<Vec<_>>(), [2]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn resize_bilinear_crop_map<T, A, F>(
    src: &[f32],
    (h, w): (usize, usize),
    (out_h, out_w): (usize, usize),
    (keep_h, keep_w): (usize, usize),
    dst: &mut [T],
    f: F,
) -> Result<Vec<Vec<A>>>
where
    T: Send,
    A: Send,
    F: Fn(&[f32], &mut [T]) -> A + Sync,
{
    let Some(plan) = Plan::new(src, (h, w), (out_h, out_w), (keep_h, keep_w), dst.len())? else {
        let planes = src.len().checked_div(h * w).unwrap_or(0);
        return Ok((0..planes).map(|_| Vec::new()).collect());
    };
    Ok(dst
        .par_chunks_mut(plan.plane_len())
        .enumerate()
        .map(|(plane, out_plane)| {
            out_plane
                .par_chunks_mut(BAND_ROWS * plan.ow())
                .enumerate()
                .map(|(band, out)| {
                    let mut values = Scratch::take(out.len());
                    plan.band(src, plane, band, &mut values);
                    f(&values, out)
                })
                .collect()
        })
        .collect())
}

/// The checked sizes and the two axes' source indices and weights of one resize.
struct Plan {
    h: usize,
    w: usize,
    ys: Vec<Tap>,
    xs: RowTaps,
}

impl Plan {
    /// `None` when there is nothing to compute (no output values).
    fn new(
        src: &[f32],
        (h, w): (usize, usize),
        (out_h, out_w): (usize, usize),
        (keep_h, keep_w): (usize, usize),
        dst_len: usize,
    ) -> Result<Option<Self>> {
        let planes = src.len().checked_div(h * w).unwrap_or(0);
        if keep_h > out_h
            || keep_w > out_w
            || src.len() != planes * h * w
            || dst_len != planes * keep_h * keep_w
            || (h * w == 0 && dst_len != 0)
        {
            candle_core::bail!(
                "resize: {} values of {h}×{w} planes to {dst_len} values of {keep_h}×{keep_w} \
                 corners of {out_h}×{out_w}",
                src.len(),
            )
        }
        if dst_len == 0 {
            return Ok(None);
        }
        let mut ys = axis(h, out_h);
        let mut xs = RowTaps::new(axis(w, out_w), w);
        ys.truncate(keep_h);
        xs.truncate(keep_w);
        Ok(Some(Self { h, w, ys, xs }))
    }

    fn ow(&self) -> usize {
        self.xs.len()
    }

    fn plane_len(&self) -> usize {
        self.ys.len() * self.xs.len()
    }

    /// Band `band` (rows `band·BAND_ROWS..`, as many as `out` holds) of plane `plane` into
    /// `out`. The band first interpolates along x the source rows it reads (each is shared by
    /// about out_h / h output rows), then blends pairs of those rows: the same products and
    /// sums as the module docs' formula, in the same order, with the blend vectorisable.
    fn band(&self, src: &[f32], plane: usize, band: usize, out: &mut [f32]) {
        let (h, w, ow) = (self.h, self.w, self.ow());
        let src = &src[plane * h * w..(plane + 1) * h * w];
        let rows = &self.ys[band * BAND_ROWS..band * BAND_ROWS + out.len() / ow];
        let lo = rows.iter().map(|r| r.0).min().unwrap_or(0);
        let hi = rows.iter().map(|r| r.1).max().unwrap_or(0);
        let mut across = Scratch::take((hi + 1 - lo) * ow);
        for (y, a) in (lo..=hi).zip(across.chunks_exact_mut(ow)) {
            self.xs.apply(&src[y * w..(y + 1) * w], a);
        }
        for (o, &(y0, y1, h0, h1)) in out.chunks_exact_mut(ow).zip(rows) {
            let a0 = &across[(y0 - lo) * ow..(y0 - lo + 1) * ow];
            let a1 = &across[(y1 - lo) * ow..(y1 - lo + 1) * ow];
            for ((o, &u), &v) in o.iter_mut().zip(a0).zip(a1) {
                *o = u * h0 + v * h1;
            }
        }
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
    if is_cpu_f32(x) && h > 0 && w > 0 {
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

    /// Bit-identical to the per-output formula (bands of rows, partial last band, several
    /// planes, up- and downsampling).
    #[test]
    fn equals_the_direct_formula() -> Result<()> {
        let (h, w) = (9, 7);
        let x = Tensor::randn(0f32, 1.0, (2, 2, h, w), &candle_core::Device::Cpu)?;
        let v: Vec<f32> = x.flatten_all()?.to_vec1()?;
        for (oh, ow) in [(70, 29), (4, 3), (9, 7 * 4)] {
            let ours: Vec<f32> = resize_bilinear(&x, oh, ow)?.flatten_all()?.to_vec1()?;
            let (ys, xs) = (axis(h, oh), axis(w, ow));
            for (i, got) in ours.iter().enumerate() {
                let (plane, y, xo) = (i / (oh * ow), (i / ow) % oh, i % ow);
                let (y0, y1, h0, h1) = ys[y];
                let (x0, x1, w0, w1) = xs[xo];
                let at = |yy: usize, xx: usize| v[plane * h * w + yy * w + xx];
                let want = (at(y0, x0) * w0 + at(y0, x1) * w1) * h0
                    + (at(y1, x0) * w0 + at(y1, x1) * w1) * h1;
                assert_eq!(got.to_bits(), want.to_bits(), "{oh}×{ow} at {i}");
            }
        }
        Ok(())
    }

    /// Into reused memory with stale values: the same values as the tensor op; lengths that
    /// do not match the planes are refused.
    #[test]
    fn into_memory_equals_the_op() -> Result<()> {
        let x = Tensor::arange(0f32, 2.0 * 5.0 * 7.0, &candle_core::Device::Cpu)?
            .reshape((1, 2, 5, 7))?
            .sin()?;
        let want = resize_bilinear_crop(&x, 20, 28, 17, 23)?;
        let mut dst = vec![f32::NAN; 2 * 17 * 23];
        let src = x.flatten_all()?.to_vec1::<f32>()?;
        resize_bilinear_crop_into(&src, (5, 7), (20, 28), (17, 23), &mut dst)?;
        assert_eq!(dst, want.flatten_all()?.to_vec1::<f32>()?);
        let mut short = vec![0f32; 2 * 17 * 23 - 1];
        assert!(resize_bilinear_crop_into(&src, (5, 7), (20, 28), (17, 23), &mut short).is_err());
        assert!(
            resize_bilinear_crop_into(&src[1..], (5, 7), (20, 28), (17, 23), &mut dst).is_err()
        );
        assert!(resize_bilinear_crop_into(&src, (5, 7), (20, 28), (21, 23), &mut dst).is_err());
        Ok(())
    }

    /// The bands handed to the callback are the stored resize's values at the same positions,
    /// in order (planes of several bands, a partial last band); results come back per plane.
    #[test]
    fn map_hands_over_the_stored_values() -> Result<()> {
        let (h, w) = (9, 13);
        let src: Vec<f32> = (0..3 * h * w).map(|i| (i as f32 * 0.61).cos()).collect();
        for (out, keep) in [((70, 52), (70, 52)), ((70, 52), (41, 33)), ((5, 6), (5, 6))] {
            let mut want = vec![0f32; 3 * keep.0 * keep.1];
            resize_bilinear_crop_into(&src, (h, w), out, keep, &mut want)?;
            let mut got = vec![f32::NAN; want.len()];
            let rows = resize_bilinear_crop_map(&src, (h, w), out, keep, &mut got, |v, o| {
                o.copy_from_slice(v);
                v.len() / keep.1
            })?;
            assert_eq!(got, want, "{out:?} kept {keep:?}");
            assert_eq!(rows.len(), 3);
            for bands in &rows {
                assert_eq!(bands.iter().sum::<usize>(), keep.0);
                assert!(bands.len() == keep.0.div_ceil(BAND_ROWS));
            }
        }
        let mut short = vec![0f32; 3 * 41 * 33 - 1];
        assert!(
            resize_bilinear_crop_map(&src, (h, w), (70, 52), (41, 33), &mut short, |_, _| ())
                .is_err()
        );
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
