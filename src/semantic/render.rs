//! Pictures of SSA results: the semantic map in dataset colours and an overlay with every mask
//! in its own colour and its class name.

use image::{Rgb, RgbImage};
use segany_core::{viz, BinaryMask, Result};
use segany_data::mask::Rle;

/// Colours a row-major `h × w` class map with `palette[class % palette.len()]`
/// (grey everywhere when the palette is empty).
pub fn semantic_image(class_map: &[u32], h: usize, w: usize, palette: &[[u8; 3]]) -> RgbImage {
    let mut img = RgbImage::new(w as u32, h as u32);
    for (p, &c) in img.pixels_mut().zip(class_map) {
        *p = Rgb(match palette.len() {
            0 => [128, 128, 128],
            n => palette[c as usize % n],
        });
    }
    img
}

fn centroid(m: &BinaryMask) -> Option<(f64, f64)> {
    let (mut sx, mut sy, mut n) = (0f64, 0f64, 0f64);
    for y in 0..m.height() {
        for x in 0..m.width() {
            if m.get(x, y) {
                sx += x as f64;
                sy += y as f64;
                n += 1.0;
            }
        }
    }
    (n > 0.0).then(|| (sx / n, sy / n))
}

/// Draws `masks` over `img`, largest first, each blended in its own colour
/// ([`viz::palette`] of its index) and labelled with its text, centred on the mask's centroid
/// on a box of the mask's colour. Masks of another size than the image are skipped.
pub fn labelled_overlay(img: &RgbImage, masks: &[(Rle, String)]) -> Result<RgbImage> {
    let mut canvas = img.clone();
    let mut order: Vec<usize> = (0..masks.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(masks[i].0.area()));
    let scale = (img.width().min(img.height()) / 500).max(1);
    let mut labels = Vec::new();
    for &i in &order {
        let m = masks[i]
            .0
            .decode()
            .map_err(|e| segany_core::Error::InvalidArgument(e.to_string()))?;
        let mask = BinaryMask::new(m.height(), m.width(), m.into_vec())?;
        let color = viz::palette(i);
        viz::blend_mask(&mut canvas, &mask, color, 0.45);
        if let Some(c) = centroid(&mask) {
            labels.push((c, color, i));
        }
    }
    // Labels last so that no mask covers them; smaller masks' labels on top.
    for ((cx, cy), color, i) in labels {
        let text = segany_segformer::display_name(&masks[i].1);
        let (tw, th) = viz::text_size(text, scale);
        let luma = 0.299 * f64::from(color.0[0])
            + 0.587 * f64::from(color.0[1])
            + 0.114 * f64::from(color.0[2]);
        let ink = if luma > 140.0 {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 255, 255])
        };
        let x = (cx as i64 - i64::from(tw) / 2)
            .clamp(0, (i64::from(img.width()) - i64::from(tw)).max(0));
        let y = (cy as i64 - i64::from(th) / 2)
            .clamp(0, (i64::from(img.height()) - i64::from(th)).max(0));
        viz::draw_text(&mut canvas, x, y, text, scale, ink, Some(color));
    }
    Ok(canvas)
}

impl super::SsaResult {
    /// The semantic map coloured with `palette` (e.g. [`super::Dataset::palette`]).
    pub fn semantic_image(&self, palette: &[[u8; 3]]) -> RgbImage {
        semantic_image(&self.class_map, self.height, self.width, palette)
    }

    /// The masks and their class names, for [`labelled_overlay`].
    pub fn labelled_masks(&self) -> Result<Vec<(Rle, String)>> {
        self.annotations
            .iter()
            .map(|a| Ok((a.record.segmentation.to_rle()?, a.class_name.clone())))
            .collect()
    }
}
