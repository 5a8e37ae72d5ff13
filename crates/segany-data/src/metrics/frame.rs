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
//! the resize is Pillow's 8-bit fixed-point bilinear resampler, reproduced
//! exactly by `segany_core::image::resize_u8`.

use crate::mask::Mask;
use segany_core::image::{resize_u8, Filter};

/// Side of SSP-SAM's evaluation frame.
pub const SSP_SAM_FRAME: usize = 512;

const LONG_SIDE: usize = 1024;

/// `ResizeLongestSide.get_preprocess_shape`: `(new_h, new_w)`.
fn preprocess_shape(h: usize, w: usize) -> (usize, usize) {
    let scale = LONG_SIDE as f64 * 1.0 / h.max(w) as f64;
    let nh = (h as f64 * scale + 0.5) as usize;
    let nw = (w as f64 * scale + 0.5) as usize;
    (nh, nw)
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
    let Some(resized) = resize_u8(&src, w, h, 1, nw, nh, Filter::Bilinear) else {
        return out;
    };
    // Zero padding to 1024², then nearest downsampling to 512²: even rows and columns.
    for oy in 0..SSP_SAM_FRAME.min(nh.div_ceil(2)) {
        for ox in 0..SSP_SAM_FRAME.min(nw.div_ceil(2)) {
            if resized[2 * oy * nw + 2 * ox] > 0 {
                out.set(oy, ox, 1);
            }
        }
    }
    out
}
