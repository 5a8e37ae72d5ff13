//! `SegformerImageProcessor` (the PIL path transformers 4.x used and SSA ran): resize to a fixed
//! `height × width` with Pillow's bilinear filter (aspect ratio not kept), rescale by 1/255,
//! normalise with the ImageNet mean and std.

use candle_core::{Device, Result, Tensor};
use image::RgbImage;
use segany_core::image::{resize_rgb, Filter};
use serde::Deserialize;

/// Pillow's resample code for bilinear (`PILImageResampling.BILINEAR`).
const PIL_BILINEAR: u32 = 2;

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeField {
    Square(usize),
    Dict {
        height: Option<usize>,
        width: Option<usize>,
        shortest_edge: Option<usize>,
    },
}

#[derive(Deserialize)]
struct RawProcessor {
    do_resize: Option<bool>,
    size: Option<SizeField>,
    resample: Option<u32>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f64>,
    do_normalize: Option<bool>,
    image_mean: Option<Vec<f64>>,
    image_std: Option<Vec<f64>>,
}

/// Settings of `SegformerImageProcessor`; `Default` is transformers' (512×512, ImageNet).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessor {
    /// Resize to `size` first.
    pub do_resize: bool,
    /// Target `(height, width)`.
    pub size: (usize, usize),
    /// Multiply by `rescale_factor`.
    pub do_rescale: bool,
    /// Usually 1/255.
    pub rescale_factor: f64,
    /// Subtract `image_mean`, divide by `image_std`.
    pub do_normalize: bool,
    /// Per-channel mean (RGB).
    pub image_mean: [f64; 3],
    /// Per-channel std (RGB).
    pub image_std: [f64; 3],
}

impl Default for ImageProcessor {
    fn default() -> Self {
        Self::square(512)
    }
}

impl ImageProcessor {
    /// transformers' defaults with a `size × size` input (640 for `…-ade-640-640`, 1024 for
    /// `…-cityscapes-1024-1024`, as their `preprocessor_config.json` say).
    pub fn square(size: usize) -> Self {
        Self {
            do_resize: true,
            size: (size, size),
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: [0.485, 0.456, 0.406],
            image_std: [0.229, 0.224, 0.225],
        }
    }

    /// Parses `preprocessor_config.json` (current `{"height", "width"}` sizes and the older
    /// integer `size` of `SegformerFeatureExtractor`); absent fields keep transformers'
    /// defaults. Only bilinear resampling (`resample: 2`) is supported.
    pub fn from_json(json: &str) -> std::result::Result<Self, String> {
        let raw: RawProcessor = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let mut p = Self::default();
        if let Some(r) = raw.resample {
            if r != PIL_BILINEAR {
                return Err(format!("resample = {r}: only 2 (bilinear) is supported"));
            }
        }
        p.do_resize = raw.do_resize.unwrap_or(true);
        match raw.size {
            None => {}
            Some(SizeField::Square(s)) => p.size = (s, s),
            Some(SizeField::Dict {
                height: Some(h),
                width: Some(w),
                ..
            }) => p.size = (h, w),
            Some(SizeField::Dict {
                shortest_edge: Some(_),
                ..
            }) => return Err("size.shortest_edge is not supported by SegFormer".into()),
            Some(SizeField::Dict { .. }) => return Err("size needs height and width".into()),
        }
        if p.do_resize && (p.size.0 == 0 || p.size.1 == 0) {
            return Err(format!("size {:?} must be positive", p.size));
        }
        p.do_rescale = raw.do_rescale.unwrap_or(true);
        p.rescale_factor = raw.rescale_factor.unwrap_or(p.rescale_factor);
        p.do_normalize = raw.do_normalize.unwrap_or(true);
        let three = |v: Vec<f64>, name: &str| -> std::result::Result<[f64; 3], String> {
            <[f64; 3]>::try_from(v)
                .map_err(|v| format!("{name} has {} values, expected 3", v.len()))
        };
        if let Some(m) = raw.image_mean {
            p.image_mean = three(m, "image_mean")?;
        }
        if let Some(s) = raw.image_std {
            p.image_std = three(s, "image_std")?;
            if p.image_std.contains(&0.0) {
                return Err("image_std contains 0".into());
            }
        }
        Ok(p)
    }

    /// `pixel_values` `(1, 3, h, w)` f32 for `img`, with transformers' arithmetic: the rescale
    /// in f64 rounded to f32, then `(x − mean) / std` in f32.
    pub fn preprocess(&self, img: &RgbImage, device: &Device) -> Result<Tensor> {
        let resized;
        let img = if self.do_resize && (img.height() as usize, img.width() as usize) != self.size {
            resized = resize_rgb(
                img,
                self.size.1 as u32,
                self.size.0 as u32,
                Filter::Bilinear,
            );
            &resized
        } else {
            img
        };
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mean = self.image_mean.map(|m| m as f32);
        let std = self.image_std.map(|m| m as f32);
        let mut data = vec![0f32; 3 * h * w];
        for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                let mut v = if self.do_rescale {
                    (f64::from(px[c]) * self.rescale_factor) as f32
                } else {
                    f32::from(px[c])
                };
                if self.do_normalize {
                    v = (v - mean[c]) / std[c];
                }
                data[c * h * w + i] = v;
            }
        }
        Tensor::from_vec(data, (1, 3, h, w), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processor_configs() {
        // SegformerFeatureExtractor era (integer size) and current ({height, width}).
        let old = ImageProcessor::from_json(
            r#"{"do_normalize": true, "do_resize": true, "feature_extractor_type": "SegformerFeatureExtractor",
                "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
                "reduce_labels": true, "resample": 2, "size": 640}"#,
        )
        .unwrap();
        assert_eq!(old, ImageProcessor::square(640));
        let new = ImageProcessor::from_json(r#"{"size": {"height": 512, "width": 1024}}"#).unwrap();
        assert_eq!(new.size, (512, 1024));
        assert!(ImageProcessor::from_json(r#"{"resample": 3}"#)
            .unwrap_err()
            .contains("resample"));
        assert!(ImageProcessor::from_json(r#"{"image_std": [1, 0, 1]}"#).is_err());
        assert!(ImageProcessor::from_json(r#"{"image_mean": [1]}"#)
            .unwrap_err()
            .contains("image_mean"));
    }

    #[test]
    fn normalises_like_transformers() {
        let img = RgbImage::from_pixel(2, 2, image::Rgb([255, 0, 128]));
        let p = ImageProcessor::square(2)
            .preprocess(&img, &Device::Cpu)
            .unwrap();
        let v = p.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let expect = |x: f64, c: usize| {
            let m = [0.485f32, 0.456, 0.406][c];
            let s = [0.229f32, 0.224, 0.225][c];
            ((x / 255.0) as f32 - m) / s
        };
        assert_eq!(v[0], expect(255.0, 0));
        assert_eq!(v[4], expect(0.0, 1));
        assert_eq!(v[8], expect(128.0, 2));
    }
}
