//! SSP-SAM's 512×512 evaluation frame.
//!
//! SSP-SAM's loader (`datasets/dataset.py` + `datasets/transforms.py::
//! SAMMaskResize`) turns the ground-truth mask into float32 and calls
//! torchvision's `resize(to_pil_image(mask), (new_h, new_w))` with the long
//! side at 1024 (`ResizeLongestSide`), keeps `> 0`, zero-pads bottom/right to
//! 1024×1024 and downsamples with `F.interpolate(mode='nearest')` to 512×512
//! (even rows and columns).
//!
//! With the torchvision releases that accompany SSP-SAM's pinned Pillow 11,
//! `to_pil_image` maps a float array to `uint8(value × 255)` in mode `L`, so
//! the resize is Pillow's 8-bit fixed-point bilinear resampler; this module
//! reproduces it exactly (`precompute_coeffs`, `normalize_coeffs_8bpc`,
//! horizontal then vertical pass, `clip8`).

use crate::mask::Mask;

/// Side of SSP-SAM's evaluation frame.
pub const SSP_SAM_FRAME: usize = 512;

const LONG_SIDE: usize = 1024;
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// `ResizeLongestSide.get_preprocess_shape`: `(new_h, new_w)`.
fn preprocess_shape(h: usize, w: usize) -> (usize, usize) {
    let scale = LONG_SIDE as f64 * 1.0 / h.max(w) as f64;
    let nh = (h as f64 * scale + 0.5) as usize;
    let nw = (w as f64 * scale + 0.5) as usize;
    (nh, nw)
}

/// Pillow's fixed-point bilinear coefficients: per output index the first
/// source index and the integer weights.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    kk: Vec<i32>,
}

fn coeffs(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the bilinear filter's support is 1.0
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut kk = vec![0i32; out_size * ksize];
    let ss = 1.0 / filterscale;
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
        let xmax = xmax.clamp(0, ksize as i64) as usize;
        let mut k = vec![0.0f64; xmax];
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate() {
            let t = ((x as i64 + xmin) as f64 - center + 0.5) * ss;
            let t = t.abs();
            *kx = if t < 1.0 { 1.0 - t } else { 0.0 };
            ww += *kx;
        }
        for (x, &kx) in k.iter().enumerate() {
            let kx = if ww != 0.0 { kx / ww } else { kx };
            let f = kx * f64::from(1u32 << PRECISION_BITS);
            kk[xx * ksize + x] = if kx < 0.0 {
                (-0.5 + f) as i32
            } else {
                (0.5 + f) as i32
            };
        }
        bounds.push((xmin as usize, xmax));
    }
    Coeffs { bounds, ksize, kk }
}

fn clip8(v: i32) -> u8 {
    if v >= (1 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

fn tap(c: &Coeffs, o: usize, value: impl Fn(usize) -> u8) -> u8 {
    let (min, n) = c.bounds[o];
    let k = &c.kk[o * c.ksize..o * c.ksize + n];
    let mut ss: i32 = 1 << (PRECISION_BITS - 1);
    for (i, &kx) in k.iter().enumerate() {
        ss = ss.wrapping_add(i32::from(value(min + i)).wrapping_mul(kx));
    }
    clip8(ss)
}

/// Maps an original-resolution mask into SSP-SAM's 512×512 padded frame, as
/// its data loader does for the ground truth (values are taken as
/// `uint8(v × 255)`, so overlap counts of `refer.getMask` behave as there).
///
/// An empty (0-sized) mask gives an all-zero frame.
///
/// ```
/// use segany_data::mask::Mask;
/// use segany_data::metrics::ssp_sam_frame;
/// // 4×2 image: resized to 1024×512, padded on the right, halved.
/// let m = Mask::from_vec(4, 2, vec![1; 8])?;
/// let f = ssp_sam_frame(&m);
/// assert_eq!((f.height(), f.width()), (512, 512));
/// assert_eq!(f.count_nonzero(), 512 * 256);
/// # Ok::<(), segany_data::DataError>(())
/// ```
pub fn ssp_sam_frame(mask: &Mask) -> Mask {
    let (h, w) = (mask.height(), mask.width());
    let mut out = Mask::zeros(SSP_SAM_FRAME, SSP_SAM_FRAME);
    if h == 0 || w == 0 {
        return out;
    }
    let (nh, nw) = preprocess_shape(h, w);
    let src: Vec<u8> = mask
        .as_slice()
        .iter()
        .map(|v| v.wrapping_mul(255))
        .collect();
    // Horizontal pass (skipped by Pillow when the width is unchanged).
    let tmp = if nw != w {
        let c = coeffs(w, nw);
        let mut t = vec![0u8; h * nw];
        for y in 0..h {
            let row = &src[y * w..(y + 1) * w];
            for x in 0..nw {
                t[y * nw + x] = tap(&c, x, |i| row[i]);
            }
        }
        t
    } else {
        src
    };
    let vert = (nh != h).then(|| coeffs(h, nh));
    for oy in 0..SSP_SAM_FRAME.min(nh.div_ceil(2)) {
        let y = 2 * oy;
        for ox in 0..SSP_SAM_FRAME.min(nw.div_ceil(2)) {
            let x = 2 * ox;
            let v = match &vert {
                Some(c) => tap(c, y, |i| tmp[i * nw + x]),
                None => tmp[y * nw + x],
            };
            if v > 0 {
                out.set(oy, ox, 1);
            }
        }
    }
    out
}
