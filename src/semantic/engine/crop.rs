//! Box crops as SSA-engine takes them: `mmcv.imcrop(img, [x, y, x + w, y + h], scale=s)`
//! (mmcv `image/geometric.py::bbox_scaling`, `bbox_clip`, `imcrop`).

use image::RgbImage;
use segany_core::{Error, Result};

/// The inclusive pixel box `[x1, y1, x2, y2]` mmcv crops for the XYWH box `bbox` at `scale` in
/// a `width × height` image:
///
/// * corners `x1 = x, y1 = y, x2 = x + w, y2 = y + h` (SSA does not subtract 1);
/// * unless `scale == 1`: `w' = x2 − x1 + 1`, `h' = y2 − y1 + 1`, each side pushed out by
///   `w'(s − 1)/2` (resp. `h'(s − 1)/2`) about the centre;
/// * cast to `int32` (truncation toward zero), then clipped to `[0, W−1] × [0, H−1]`.
///
/// The crop is `img[y1..=y2, x1..=x2]` (no padding). A scale below 1 can invert a thin box
/// (`x2 < x1`): mmcv then returns an empty patch, [`crop_rgb`] an error.
pub fn imcrop_box(bbox: [f64; 4], scale: f64, width: usize, height: usize) -> [i64; 4] {
    let [x, y, w, h] = bbox;
    let (mut x1, mut y1, mut x2, mut y2) = (x, y, x + w, y + h);
    if scale != 1.0 {
        let dw = (x2 - x1 + 1.0) * (scale - 1.0) * 0.5;
        let dh = (y2 - y1 + 1.0) * (scale - 1.0) * 0.5;
        (x1, y1, x2, y2) = (x1 - dw, y1 - dh, x2 + dw, y2 + dh);
    }
    let clip = |v: f64, max: usize| (v.trunc() as i64).clamp(0, max.saturating_sub(1) as i64);
    [
        clip(x1, width),
        clip(y1, height),
        clip(x2, width),
        clip(y2, height),
    ]
}

/// Copies the inclusive box `[x1, y1, x2, y2]` out of `image`.
pub fn crop_rgb(image: &RgbImage, b: [i64; 4]) -> Result<RgbImage> {
    let [x1, y1, x2, y2] = b;
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    if x1 < 0 || y1 < 0 || x2 < x1 || y2 < y1 || x2 >= w || y2 >= h {
        return Err(Error::InvalidArgument(format!(
            "crop box {b:?} is empty or outside the {w}x{h} image"
        )));
    }
    Ok(image::imageops::crop_imm(
        image,
        x1 as u32,
        y1 as u32,
        (x2 - x1 + 1) as u32,
        (y2 - y1 + 1) as u32,
    )
    .to_image())
}
