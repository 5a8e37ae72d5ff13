//! Binary masks at image resolution.

use crate::{Error, Result};
use std::path::Path;

/// A binary mask, row-major, one byte per pixel (0 or 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryMask {
    height: usize,
    width: usize,
    data: Vec<u8>,
}

impl BinaryMask {
    /// A mask from row-major values; any non-zero value is foreground.
    pub fn new(height: usize, width: usize, data: Vec<u8>) -> Result<Self> {
        if data.len() != height * width {
            return Err(Error::InvalidArgument(format!(
                "mask data has {} values, expected {height}x{width}",
                data.len()
            )));
        }
        let data = data.into_iter().map(|v| u8::from(v != 0)).collect();
        Ok(Self {
            height,
            width,
            data,
        })
    }

    /// Thresholds row-major logits: foreground where `logit > threshold` (SAM uses 0).
    pub fn from_logits(
        height: usize,
        width: usize,
        logits: &[f32],
        threshold: f32,
    ) -> Result<Self> {
        Self::new(
            height,
            width,
            logits.iter().map(|&v| u8::from(v > threshold)).collect(),
        )
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Row-major 0/1 values.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Whether pixel `(x, y)` is foreground (false outside the mask).
    pub fn get(&self, x: usize, y: usize) -> bool {
        x < self.width && y < self.height && self.data[y * self.width + x] != 0
    }

    /// Number of foreground pixels.
    pub fn area(&self) -> usize {
        self.data.iter().map(|&v| v as usize).sum()
    }

    /// Bounding box `[x, y, w, h]` as segment-anything computes it (`batched_mask_to_box` then
    /// XYWH): `w = x_max - x_min`, `h = y_max - y_min` over foreground pixels, `[0,0,0,0]` for an
    /// empty mask.
    pub fn bbox_xywh(&self) -> [usize; 4] {
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        for y in 0..self.height {
            let row = &self.data[y * self.width..(y + 1) * self.width];
            for (x, &v) in row.iter().enumerate() {
                if v != 0 {
                    x0 = x0.min(x);
                    x1 = x1.max(x);
                    y0 = y0.min(y);
                    y1 = y1.max(y);
                }
            }
        }
        if x0 == usize::MAX {
            return [0, 0, 0, 0];
        }
        [x0, y0, x1 - x0, y1 - y0]
    }

    /// The mask as an 8-bit gray image, 255 for foreground.
    pub fn to_gray_image(&self) -> image::GrayImage {
        let px = self.data.iter().map(|&v| v * 255).collect();
        image::GrayImage::from_raw(self.width as u32, self.height as u32, px)
            .unwrap_or_else(|| image::GrayImage::new(self.width as u32, self.height as u32))
    }

    /// Writes the mask as an 8-bit PNG (255 = foreground).
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.to_gray_image()
            .save_with_format(path, image::ImageFormat::Png)
            .map_err(|e| Error::Image {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
    }

    /// Fraction of pixels on which two masks of the same size agree.
    pub fn agreement(&self, other: &BinaryMask) -> Result<f64> {
        if (self.height, self.width) != (other.height, other.width) {
            return Err(Error::InvalidArgument("masks differ in size".into()));
        }
        let same = self
            .data
            .iter()
            .zip(&other.data)
            .filter(|(a, b)| a == b)
            .count();
        Ok(same as f64 / self.data.len().max(1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_and_box() {
        // 4x5 mask with foreground at (1,1), (3,1), (2,2): hand-worked box [1,1,2,1], area 3.
        let mut d = vec![0u8; 20];
        d[5 + 1] = 1;
        d[5 + 3] = 1;
        d[10 + 2] = 1;
        let m = BinaryMask::new(4, 5, d).unwrap();
        assert_eq!(m.area(), 3);
        assert_eq!(m.bbox_xywh(), [1, 1, 2, 1]);
        assert_eq!(
            BinaryMask::new(2, 2, vec![0; 4]).unwrap().bbox_xywh(),
            [0, 0, 0, 0]
        );
        assert!(BinaryMask::new(2, 2, vec![0; 3]).is_err());
    }
}
