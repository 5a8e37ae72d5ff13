//! Pillow's `Image.resize` for 8-bit images, reproduced to the bit.
//!
//! SAM's reference pre-processing (`ResizeLongestSide.apply_image`) goes through
//! `torchvision.transforms.functional.resize` on a PIL image, i.e. Pillow's separable
//! convolution resampler with a bilinear (triangle) filter whose support grows with the
//! down-scaling factor (anti-aliasing). Pillow computes the filter weights in double precision,
//! rounds them to 22-bit fixed point, resamples rows first into an 8-bit intermediate image and
//! then columns, rounding and clamping each pass to 0..=255. Doing the same here gives
//! byte-identical images.

use image::RgbImage;

/// Resampling filter, as Pillow names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Triangle filter, support 1 (`Image.BILINEAR`).
    Bilinear,
    /// Cubic filter with a = -0.5, support 2 (`Image.BICUBIC`).
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Fixed-point filter taps for each output position: (first input index, weights).
struct Taps {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

fn precompute(in_size: usize, out_size: usize, filter: Filter) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C casts truncate toward zero, as `as` does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let w = filter.eval((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for (x, kx) in k.iter().enumerate().take(n) {
            let v = if ww != 0.0 { kx / ww } else { *kx };
            let fixed = v * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if v < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Taps {
        ksize,
        bounds,
        weights,
    }
}

#[inline]
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resamples along one axis. `src` holds `lines` lines of `in_len` pixels, each pixel
/// `channels` bytes, with `pixel_stride`/`line_stride` in bytes.
fn pass(
    src: &[u8],
    lines: usize,
    in_len: usize,
    out_len: usize,
    horizontal: bool,
    c: usize,
    filter: Filter,
) -> Vec<u8> {
    let taps = precompute(in_len, out_len, filter);
    let mut out = vec![0u8; lines * out_len * c];
    let half = 1i64 << (PRECISION_BITS - 1);
    for line in 0..lines {
        for (o, &(xmin, n)) in taps.bounds.iter().enumerate() {
            let k = &taps.weights[o * taps.ksize..o * taps.ksize + n];
            for ch in 0..c {
                let mut acc = half;
                for (i, &w) in k.iter().enumerate() {
                    let idx = if horizontal {
                        (line * in_len + xmin + i) * c + ch
                    } else {
                        ((xmin + i) * lines + line) * c + ch
                    };
                    acc += src[idx] as i64 * w as i64;
                }
                let dst = if horizontal {
                    (line * out_len + o) * c + ch
                } else {
                    (o * lines + line) * c + ch
                };
                out[dst] = clip8(acc);
            }
        }
    }
    out
}

/// Resizes an interleaved 8-bit image (`height × width × channels`, row-major) to
/// `out_w × out_h` exactly as Pillow's `Image.resize((out_w, out_h), filter)` does for modes
/// `L` (1 channel) and `RGB` (3). `None` when a size is zero or the buffer length is not
/// `width · height · channels`.
///
/// ```
/// use segany_core::image::{resize_u8, Filter};
/// let gray = vec![0u8, 255, 0, 255];
/// let out = resize_u8(&gray, 4, 1, 1, 2, 1, Filter::Bilinear).unwrap();
/// assert_eq!(out.len(), 2);
/// assert!(resize_u8(&gray, 3, 1, 1, 2, 1, Filter::Bilinear).is_none());
/// ```
pub fn resize_u8(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
    filter: Filter,
) -> Option<Vec<u8>> {
    if width == 0
        || height == 0
        || out_w == 0
        || out_h == 0
        || channels == 0
        || src.len() != width * height * channels
    {
        return None;
    }
    // Pillow skips a pass whose size is unchanged (it would be the identity anyway).
    let data = if out_w != width {
        pass(src, height, width, out_w, true, channels, filter)
    } else {
        src.to_vec()
    };
    Some(if out_h != height {
        pass(&data, out_w, height, out_h, false, channels, filter)
    } else {
        data
    })
}

/// Resizes an RGB image to `width`×`height` exactly as Pillow's `Image.resize` does.
///
/// ```
/// use segany_core::image::{resize_rgb, Filter};
/// let img = image::RgbImage::from_pixel(40, 30, image::Rgb([10, 200, 30]));
/// let out = resize_rgb(&img, 20, 15, Filter::Bilinear);
/// assert_eq!(out.dimensions(), (20, 15));
/// assert_eq!(out.get_pixel(3, 4).0, [10, 200, 30]);
/// ```
pub fn resize_rgb(img: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    resize_u8(
        img.as_raw(),
        w,
        h,
        3,
        width as usize,
        height as usize,
        filter,
    )
    .and_then(|data| RgbImage::from_raw(width, height, data))
    .unwrap_or_else(|| RgbImage::new(width, height))
}
