//! Decoding any image the `image` crate understands into 8-bit RGB.

use crate::{Error, Result};
use image::{DynamicImage, RgbImage};
use std::path::Path;

/// Loads an image file (PNG, JPEG, BMP, TIFF, WebP, GIF; 8 or 16 bit; gray, gray+alpha, RGB or
/// RGBA) as 8-bit RGB. Alpha is dropped and gray is replicated to three channels, as
/// `PIL.Image.convert("RGB")` does; 16-bit samples are scaled to 8 bits.
pub fn load_rgb(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let img = image::load_from_memory(&bytes).map_err(|e| Error::Image {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(to_rgb(img))
}

/// Converts a decoded image to 8-bit RGB (see [`load_rgb`]).
pub fn to_rgb(img: DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    }
}
