//! BLIP's image preprocessing, as transformers' (PIL-based) `BlipImageProcessor`: resize to
//! `size × size` ignoring the aspect ratio with Pillow's BICUBIC filter, `x / 255`, then the
//! OpenAI-CLIP mean/std. Resizing is Pillow-exact (`segany_core::image::resize_u8`).

use candle_core::{Device, Tensor};
use segany_core::image::{resize_u8, Filter};
use segany_core::{Error, Result};

/// Normalisation mean (RGB), transformers' `OPENAI_CLIP_MEAN`.
pub const BLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// Normalisation standard deviation (RGB), transformers' `OPENAI_CLIP_STD`.
#[allow(clippy::excessive_precision)] // the reference literals
pub const BLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// The processor's output side for both Salesforce captioning checkpoints.
pub const BLIP_IMAGE_SIZE: usize = 384;

/// `[3, size, size]` f32 pixels from an RGB8 buffer (`height × width × 3`, row-major).
pub fn blip_preprocess(
    rgb: &[u8],
    width: usize,
    height: usize,
    size: usize,
    device: &Device,
) -> Result<Tensor> {
    if width == 0 || height == 0 || size == 0 || rgb.len() != width * height * 3 {
        return Err(Error::InvalidArgument(format!(
            "BLIP preprocessing needs a non-empty {width}x{height} RGB8 buffer \
             ({} bytes given) and a positive size ({size})",
            rgb.len()
        )));
    }
    let resized =
        resize_u8(rgb, width, height, 3, size, size, Filter::Bicubic).ok_or_else(|| {
            Error::InvalidArgument(format!("cannot resize a {width}x{height} image to {size}"))
        })?;
    let plane = size * size;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in resized.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (px[c] as f32 / 255.0 - BLIP_MEAN[c]) / BLIP_STD[c];
        }
    }
    Ok(Tensor::from_vec(out, (3, size, size), device)?)
}
