//! SAM's `ResizeLongestSide` transform, pixel normalisation and mask post-processing.

use super::resample::{resize_rgb, Filter};
use crate::nn::{
    grown, resize_bilinear, resize_bilinear_crop, resize_bilinear_crop_into,
    resize_bilinear_crop_map,
};
use crate::Result;
use candle_core::{Device, Tensor};
use image::RgbImage;

/// SAM's pixel mean (RGB, 0..255 scale).
pub const PIXEL_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
/// SAM's pixel standard deviation (RGB, 0..255 scale).
pub const PIXEL_STD: [f32; 3] = [58.395, 57.12, 57.375];

/// Resizes images so their longest side is `target_length` and maps prompt coordinates
/// accordingly (segment-anything's `utils/transforms.py::ResizeLongestSide`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResizeLongestSide {
    /// Length of the longest side after resizing (the encoder's input size, 1024 for SAM).
    pub target_length: usize,
}

impl ResizeLongestSide {
    /// A transform to `target_length`.
    pub fn new(target_length: usize) -> Self {
        Self { target_length }
    }

    /// `(new_h, new_w)` for an image of `(h, w)`: scaled so the long side is
    /// `target_length`, rounded half up.
    ///
    /// ```
    /// let t = segany_core::image::ResizeLongestSide::new(1024);
    /// assert_eq!(t.preprocess_shape(300, 451), (681, 1024));
    /// ```
    pub fn preprocess_shape(&self, h: usize, w: usize) -> (usize, usize) {
        let scale = self.target_length as f64 / h.max(w) as f64;
        let nh = (h as f64 * scale + 0.5) as usize;
        let nw = (w as f64 * scale + 0.5) as usize;
        (nh, nw)
    }

    /// Resizes an image with Pillow's bilinear filter, as the reference does.
    pub fn apply_image(&self, img: &RgbImage) -> RgbImage {
        let (nh, nw) = self.preprocess_shape(img.height() as usize, img.width() as usize);
        resize_rgb(img, nw as u32, nh as u32, Filter::Bilinear)
    }

    /// Maps `(x, y)` pixel coordinates of an image of `original_size = (h, w)` to the
    /// resized frame.
    pub fn apply_coords(&self, xy: [f32; 2], original_size: (usize, usize)) -> [f32; 2] {
        let (oh, ow) = original_size;
        let (nh, nw) = self.preprocess_shape(oh, ow);
        [
            (xy[0] as f64 * (nw as f64 / ow as f64)) as f32,
            (xy[1] as f64 * (nh as f64 / oh as f64)) as f32,
        ]
    }

    /// Maps an `[x0, y0, x1, y1]` box to the resized frame.
    pub fn apply_box(&self, b: [f32; 4], original_size: (usize, usize)) -> [f32; 4] {
        let p = self.apply_coords([b[0], b[1]], original_size);
        let q = self.apply_coords([b[2], b[3]], original_size);
        [p[0], p[1], q[0], q[1]]
    }

    /// Resizes, normalises with [`PIXEL_MEAN`]/[`PIXEL_STD`] and zero-pads bottom/right to a
    /// `1×3×target×target` f32 tensor (segment-anything's `set_image` + `Sam.preprocess`).
    /// Returns the tensor and the resized `(h, w)`.
    pub fn preprocess(&self, img: &RgbImage, device: &Device) -> Result<(Tensor, (usize, usize))> {
        let resized = self.apply_image(img);
        let (h, w) = (resized.height() as usize, resized.width() as usize);
        Ok((
            normalize_and_pad(&resized, self.target_length, device)?,
            (h, w),
        ))
    }
}

/// Normalises an already resized image and pads it to `size`×`size` (CHW, batch 1).
pub fn normalize_and_pad(img: &RgbImage, size: usize, device: &Device) -> Result<Tensor> {
    let mut data = vec![0f32; 3 * size * size];
    for (x, y, p) in img.enumerate_pixels() {
        let (x, y) = (x as usize, y as usize);
        if x >= size || y >= size {
            continue;
        }
        for c in 0..3 {
            data[c * size * size + y * size + x] = (p.0[c] as f32 - PIXEL_MEAN[c]) / PIXEL_STD[c];
        }
    }
    Ok(Tensor::from_vec(data, (1, 3, size, size), device)?)
}

/// SAM's `postprocess_masks`: upsample low-resolution logits `(B, K, h, w)` bilinearly to
/// `image_size`², crop the padding to `input_size`, and resize bilinearly to
/// `original_size`. Returns logits; threshold at 0 for binary masks.
pub fn postprocess_masks(
    low_res: &Tensor,
    image_size: usize,
    input_size: (usize, usize),
    original_size: (usize, usize),
) -> Result<Tensor> {
    // Only the part that survives the crop is upsampled (the same values).
    let cropped =
        resize_bilinear_crop(low_res, image_size, image_size, input_size.0, input_size.1)?;
    Ok(resize_bilinear(&cropped, original_size.0, original_size.1)?)
}

/// [`postprocess_masks`] into memory kept from call to call, for callers that post-process
/// many chunks of masks (automatic mask generation): fresh memory of that size (64 MiB for
/// 16 masks at 1024²) is new pages each time, which the kernel faults in and zeroes.
#[derive(Debug, Default)]
pub struct MaskPostprocessor {
    mid: Vec<f32>,
    out: Vec<f32>,
}

impl MaskPostprocessor {
    /// [`postprocess_masks`] on the values of `P` planes of `low_dims` low-resolution logits:
    /// the same two resizes (the padded input's corner `input_size`, then `original_size`).
    /// Returns the `P` planes of `original_size` logits.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use segany_core::image::{postprocess_masks, MaskPostprocessor};
    /// let low = Tensor::arange(0f32, 2.0 * 16.0, &Device::Cpu)?.reshape((1, 2, 4, 4))?;
    /// let want = postprocess_masks(&low, 16, (12, 16), (6, 8))?;
    /// let mut post = MaskPostprocessor::default();
    /// let got = post.postprocess(&low.flatten_all()?.to_vec1()?, (4, 4), 16, (12, 16), (6, 8))?;
    /// assert_eq!(got, &want.flatten_all()?.to_vec1::<f32>()?[..]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn postprocess(
        &mut self,
        low: &[f32],
        low_dims: (usize, usize),
        image_size: usize,
        input_size: (usize, usize),
        original_size: (usize, usize),
    ) -> Result<&[f32]> {
        let planes = low.len().checked_div(low_dims.0 * low_dims.1).unwrap_or(0);
        let n_out = planes * original_size.0 * original_size.1;
        let last = last_resize(
            &mut self.mid,
            low,
            low_dims,
            image_size,
            input_size,
            original_size,
        )?;
        let out = grown(&mut self.out, n_out);
        resize_bilinear_crop_into(last.src, last.src_dims, last.out_dims, original_size, out)?;
        Ok(out)
    }

    /// [`postprocess`](Self::postprocess) handing the final logits to `f` a band of rows at a
    /// time ([`resize_bilinear_crop_map`]) instead of storing them: `f(logits, out)` fills the
    /// matching part of `dst` (one `T` per `original_size` pixel and plane, e.g. a binary
    /// mask) while the logits are in the cache, and its results come back per plane, band by
    /// band from the top. Only the intermediate resize (when `input_size` differs from
    /// `original_size`) is stored, in memory kept from call to call.
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use segany_core::image::{postprocess_masks, MaskPostprocessor};
    /// let low = Tensor::arange(0f32, 2.0 * 16.0, &Device::Cpu)?.reshape((1, 2, 4, 4))?;
    /// let logits = postprocess_masks(&low, 16, (12, 16), (6, 8))?.flatten_all()?.to_vec1::<f32>()?;
    /// let mut masks = vec![0u8; 2 * 6 * 8];
    /// let areas = MaskPostprocessor::default().postprocess_map(
    ///     &low.flatten_all()?.to_vec1()?,
    ///     (4, 4),
    ///     16,
    ///     (12, 16),
    ///     (6, 8),
    ///     &mut masks,
    ///     |logits, out| {
    ///         out.iter_mut().zip(logits).for_each(|(o, &v)| *o = u8::from(v > 20.0));
    ///         logits.iter().filter(|&&v| v > 20.0).count()
    ///     },
    /// )?;
    /// let want: Vec<u8> = logits.iter().map(|&v| u8::from(v > 20.0)).collect();
    /// assert_eq!(masks, want);
    /// let area = |p: usize| want[p * 48..(p + 1) * 48].iter().map(|&m| m as usize).sum::<usize>();
    /// assert_eq!(areas[0].iter().sum::<usize>(), area(0));
    /// assert_eq!(areas[1].iter().sum::<usize>(), area(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn postprocess_map<T, A, F>(
        &mut self,
        low: &[f32],
        low_dims: (usize, usize),
        image_size: usize,
        input_size: (usize, usize),
        original_size: (usize, usize),
        dst: &mut [T],
        f: F,
    ) -> Result<Vec<Vec<A>>>
    where
        T: Send,
        A: Send,
        F: Fn(&[f32], &mut [T]) -> A + Sync,
    {
        let last = last_resize(
            &mut self.mid,
            low,
            low_dims,
            image_size,
            input_size,
            original_size,
        )?;
        Ok(resize_bilinear_crop_map(
            last.src,
            last.src_dims,
            last.out_dims,
            original_size,
            dst,
            f,
        )?)
    }
}

/// The last of [`postprocess_masks`]' resizes, whose `original_size` corner is the result:
/// from the low-resolution logits to the padded square when the crop of the padding is
/// already the original size, else from the cropped intermediate (computed into `mid`) to the
/// original size.
struct LastResize<'a> {
    src: &'a [f32],
    src_dims: (usize, usize),
    out_dims: (usize, usize),
}

fn last_resize<'a>(
    mid: &'a mut Vec<f32>,
    low: &'a [f32],
    low_dims: (usize, usize),
    image_size: usize,
    input_size: (usize, usize),
    original_size: (usize, usize),
) -> Result<LastResize<'a>> {
    let square = (image_size, image_size);
    if input_size == original_size {
        return Ok(LastResize {
            src: low,
            src_dims: low_dims,
            out_dims: square,
        });
    }
    let planes = low.len().checked_div(low_dims.0 * low_dims.1).unwrap_or(0);
    let mid = grown(mid, planes * input_size.0 * input_size.1);
    resize_bilinear_crop_into(low, low_dims, square, input_size, mid)?;
    Ok(LastResize {
        src: mid,
        src_dims: input_size,
        out_dims: original_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same values as [`postprocess_masks`], with and without the second resize, on memory
    /// left from a larger call before.
    #[test]
    fn postprocessor_equals_postprocess_masks() -> Result<()> {
        let low = Tensor::arange(0f32, 3.0 * 64.0, &Device::Cpu)?
            .reshape((1, 3, 8, 8))?
            .sin()?;
        let values = low.flatten_all()?.to_vec1::<f32>()?;
        let mut post = MaskPostprocessor::default();
        for (input, original) in [
            ((32, 24), (32, 24)),
            ((24, 32), (45, 60)),
            ((32, 32), (7, 7)),
        ] {
            let want = postprocess_masks(&low, 32, input, original)?;
            let got = post.postprocess(&values, (8, 8), 32, input, original)?;
            assert_eq!(
                got,
                &want.flatten_all()?.to_vec1::<f32>()?[..],
                "{input:?} → {original:?}"
            );
        }
        Ok(())
    }
}
