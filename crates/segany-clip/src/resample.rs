//! Pillow's separable resampling (`Image.resize`, `Resample.c`), bit-exact for 8-bit RGB:
//! the same filter supports, coefficient normalisation, 22-bit fixed-point accumulation and
//! horizontal-then-vertical passes with an 8-bit intermediate image.

/// Resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `PIL.Image.BILINEAR` (triangle, support 1).
    Bilinear,
    /// `PIL.Image.BICUBIC` (Keys cubic with a = -0.5, support 2).
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

/// Per output pixel: first input index and fixed-point weights.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

fn precompute(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let ss = 1.0 / filterscale;
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero.
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
            let f = v * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if v < 0.0 {
                (-0.5 + f) as i32
            } else {
                (0.5 + f) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Coeffs {
        ksize,
        bounds,
        weights,
    }
}

fn clip8(v: i64) -> u8 {
    let v = v >> PRECISION_BITS;
    v.clamp(0, 255) as u8
}

/// Resizes an RGB8 image (`height × width × 3`, row-major) to `out_w × out_h` exactly as
/// Pillow's `Image.resize((out_w, out_h), filter)` does. `None` when a size is zero or the
/// buffer length is not `width * height * 3`.
pub fn resize_rgb8(
    src: &[u8],
    width: usize,
    height: usize,
    out_w: usize,
    out_h: usize,
    filter: Filter,
) -> Option<Vec<u8>> {
    if width == 0 || height == 0 || out_w == 0 || out_h == 0 || src.len() != width * height * 3 {
        return None;
    }
    let need_h = out_w != width;
    let need_v = out_h != height;
    let horiz = precompute(width, out_w, filter);
    let mut vert = precompute(height, out_h, filter);
    let (y_first, y_last) = match (vert.bounds.first(), vert.bounds.last()) {
        (Some(f), Some(l)) => (f.0, l.0 + l.1),
        _ => (0, height),
    };
    let half = 1i64 << (PRECISION_BITS - 1);
    let (mut img, mut w, mut h) = (src.to_vec(), width, height);
    if need_h {
        for b in vert.bounds.iter_mut() {
            b.0 -= y_first;
        }
        let rows = y_last - y_first;
        let mut out = vec![0u8; rows * out_w * 3];
        for y in 0..rows {
            let row = &src[(y + y_first) * width * 3..(y + y_first + 1) * width * 3];
            for (xx, &(xmin, n)) in horiz.bounds.iter().enumerate() {
                let k = &horiz.weights[xx * horiz.ksize..xx * horiz.ksize + n];
                for c in 0..3 {
                    let mut ss = half;
                    for (x, &kx) in k.iter().enumerate() {
                        ss += row[(x + xmin) * 3 + c] as i64 * kx as i64;
                    }
                    out[(y * out_w + xx) * 3 + c] = clip8(ss);
                }
            }
        }
        img = out;
        w = out_w;
        h = rows;
    }
    if need_v {
        let mut out = vec![0u8; out_h * w * 3];
        for (yy, &(ymin, n)) in vert.bounds.iter().enumerate() {
            let k = &vert.weights[yy * vert.ksize..yy * vert.ksize + n];
            for x in 0..w * 3 {
                let mut ss = half;
                for (y, &ky) in k.iter().enumerate() {
                    ss += img[(y + ymin) * w * 3 + x] as i64 * ky as i64;
                }
                out[yy * w * 3 + x] = clip8(ss);
            }
        }
        img = out;
        h = out_h;
    }
    debug_assert_eq!(img.len(), h * w * 3);
    Some(img)
}
