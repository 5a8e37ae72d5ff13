//! Image preprocessing: CLIP's (resize short side bicubic, centre crop, mean/std) and
//! SSP-SAM's (long side to S bilinear, mean/std, pasted centred on a zero S×S canvas).
//!
//! Inputs are RGB8 pixel buffers (`height × width × 3`, row-major) so that this crate does no
//! image decoding; resizing is Pillow-exact (`segany_core::image::resize_u8`), so the tensors equal
//! torchvision-on-PIL pipelines.

use candle_core::{Device, Tensor};

use crate::error::{ClipError, Result};
use segany_core::image::{resize_u8, Filter};

/// CLIP's normalisation mean (RGB).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's normalisation standard deviation (RGB).
#[allow(clippy::excessive_precision)] // the literals of the reference code
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// A borrowed RGB8 image.
#[derive(Debug, Clone, Copy)]
pub struct RgbImage<'a> {
    /// `height × width × 3` bytes, row-major.
    pub data: &'a [u8],
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

impl<'a> RgbImage<'a> {
    /// Wraps a buffer, checking its length.
    pub fn new(data: &'a [u8], width: usize, height: usize) -> Result<Self> {
        if width == 0 || height == 0 || data.len() != width * height * 3 {
            return Err(ClipError::InvalidConfig {
                field: "image".into(),
                value: format!("{width}x{height}, {} bytes", data.len()),
                reason: "expected a non-empty RGB8 buffer of width*height*3 bytes".into(),
            });
        }
        Ok(Self {
            data,
            width,
            height,
        })
    }
}

fn check_size(size: usize) -> Result<()> {
    if size == 0 {
        return Err(ClipError::InvalidConfig {
            field: "size".into(),
            value: "0".into(),
            reason: "the output side must be positive".into(),
        });
    }
    Ok(())
}

fn bad_image(img: RgbImage) -> ClipError {
    ClipError::InvalidConfig {
        field: "image".into(),
        value: format!("{}x{}, {} bytes", img.width, img.height, img.data.len()),
        reason: "expected a non-empty RGB8 buffer of width*height*3 bytes".into(),
    }
}

/// Python's `round()` (half to even).
fn py_round(x: f64) -> i64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        (2.0 * (x / 2.0).round()) as i64
    } else {
        r as i64
    }
}

/// `(x/255 - mean) / std` of an RGB8 buffer → `[3, h, w]` f32.
fn normalize(rgb: &[u8], w: usize, h: usize, device: &Device) -> Result<Tensor> {
    let mut out = vec![0f32; 3 * w * h];
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * w * h + i] = (px[c] as f32 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
        }
    }
    Ok(Tensor::from_vec(out, (3, h, w), device)?)
}

/// Resize-and-crop step of CLIP's transform as RGB8 (`size × size × 3`):
/// torchvision `Resize(size, BICUBIC)` (short side to `size`, long side
/// `int(size * long / short)`) then `CenterCrop(size)`.
pub fn clip_resize_crop(img: RgbImage, size: usize) -> Result<Vec<u8>> {
    check_size(size)?;
    let (w, h) = (img.width, img.height);
    let (new_w, new_h) = if w <= h {
        (size, size * h / w)
    } else {
        (size * w / h, size)
    };
    let resized = resize_u8(img.data, w, h, 3, new_w, new_h, Filter::Bicubic)
        .ok_or_else(|| bad_image(img))?;
    let top = py_round((new_h as f64 - size as f64) / 2.0).max(0) as usize;
    let left = py_round((new_w as f64 - size as f64) / 2.0).max(0) as usize;
    let mut out = Vec::with_capacity(size * size * 3);
    for y in top..top + size {
        out.extend_from_slice(&resized[(y * new_w + left) * 3..(y * new_w + left + size) * 3]);
    }
    Ok(out)
}

/// CLIP's eval transform (OpenAI `clip._transform`, open_clip `image_transform`):
/// `[3, size, size]` f32.
pub fn clip_preprocess(img: RgbImage, size: usize, device: &Device) -> Result<Tensor> {
    normalize(&clip_resize_crop(img, size)?, size, size, device)
}

/// Where SSP-SAM's preprocessing put the image on its canvas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CanvasPlacement {
    /// `size / max(h, w)`.
    pub ratio: f64,
    /// Resized width and height.
    pub width: usize,
    /// Resized height.
    pub height: usize,
    /// Left offset on the canvas.
    pub left: usize,
    /// Top offset on the canvas.
    pub top: usize,
}

/// SSP-SAM's test-time CLIP input: long side to `size` (`round(h·r)`, `round(w·r)`, Pillow
/// bilinear), normalised with CLIP's mean/std, pasted on a zero `size × size` canvas at
/// `top = round(dh/2 - 0.1)`, `left = round(dw/2 - 0.1)`. Returns `[3, size, size]`.
pub fn ssp_sam_preprocess(
    img: RgbImage,
    size: usize,
    device: &Device,
) -> Result<(Tensor, CanvasPlacement)> {
    check_size(size)?;
    let (w, h) = (img.width, img.height);
    let ratio = size as f64 / w.max(h) as f64;
    let new_h = (py_round(h as f64 * ratio).max(1) as usize).min(size);
    let new_w = (py_round(w as f64 * ratio).max(1) as usize).min(size);
    let resized = resize_u8(img.data, w, h, 3, new_w, new_h, Filter::Bilinear)
        .ok_or_else(|| bad_image(img))?;
    let norm = normalize(&resized, new_w, new_h, device)?;
    let (dh, dw) = ((size - new_h) as f64, (size - new_w) as f64);
    let top = py_round(dh / 2.0 - 0.1).max(0) as usize;
    let left = py_round(dw / 2.0 - 0.1).max(0) as usize;
    let canvas = norm.pad_with_zeros(1, top, size - new_h - top)?;
    let canvas = canvas.pad_with_zeros(2, left, size - new_w - left)?;
    Ok((
        canvas,
        CanvasPlacement {
            ratio,
            width: new_w,
            height: new_h,
            left,
            top,
        },
    ))
}
