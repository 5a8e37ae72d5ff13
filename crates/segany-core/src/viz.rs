//! Drawing helpers for overlays: translucent masks, points, boxes and text labels on an RGB
//! image.

use crate::BinaryMask;
use image::{Rgb, RgbImage};

mod font;
pub use font::{draw_text, text_size};

/// A distinct colour for index `i` (golden-angle hue walk, fixed saturation/value).
pub fn palette(i: usize) -> Rgb<u8> {
    let h = (i as f64 * 137.508) % 360.0;
    let (s, v) = (0.75, 0.95);
    let c = v * s;
    let x = c * (1.0 - ((h / 60.0) % 2.0 - 1.0).abs());
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    let to = |f: f64| ((f + m) * 255.0).round() as u8;
    Rgb([to(r), to(g), to(b)])
}

/// Blends `color` over the mask's foreground with opacity `alpha` (0..1) and outlines it.
/// Masks of another size than the image are ignored.
pub fn blend_mask(img: &mut RgbImage, mask: &BinaryMask, color: Rgb<u8>, alpha: f32) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if (mask.height(), mask.width()) != (h, w) {
        return;
    }
    for y in 0..h {
        for x in 0..w {
            if !mask.get(x, y) {
                continue;
            }
            let edge = x == 0
                || y == 0
                || !mask.get(x - 1, y)
                || !mask.get(x + 1, y)
                || !mask.get(x, y - 1)
                || !mask.get(x, y + 1);
            let p = img.get_pixel_mut(x as u32, y as u32);
            let a = if edge { 1.0 } else { alpha };
            for c in 0..3 {
                p.0[c] = (p.0[c] as f32 * (1.0 - a) + color.0[c] as f32 * a).round() as u8;
            }
        }
    }
}

/// Draws a filled disc of `radius` with a white ring at `(x, y)`.
pub fn draw_point(img: &mut RgbImage, x: f32, y: f32, radius: f32, color: Rgb<u8>) {
    let r_out = radius + 2.0;
    let (x0, x1) = (
        (x - r_out).floor().max(0.0) as i64,
        (x + r_out).ceil() as i64,
    );
    let (y0, y1) = (
        (y - r_out).floor().max(0.0) as i64,
        (y + r_out).ceil() as i64,
    );
    for py in y0..=y1 {
        for px in x0..=x1 {
            if px >= img.width() as i64 || py >= img.height() as i64 {
                continue;
            }
            let d = ((px as f32 - x).powi(2) + (py as f32 - y).powi(2)).sqrt();
            if d <= radius {
                img.put_pixel(px as u32, py as u32, color);
            } else if d <= r_out {
                img.put_pixel(px as u32, py as u32, Rgb([255, 255, 255]));
            }
        }
    }
}

/// Draws the outline of `[x0, y0, x1, y1]` with the given line `thickness`.
pub fn draw_box(img: &mut RgbImage, b: [f32; 4], thickness: u32, color: Rgb<u8>) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let clamp = |v: f32, hi: i64| (v.round() as i64).clamp(0, hi - 1);
    let (x0, y0, x1, y1) = (
        clamp(b[0], w),
        clamp(b[1], h),
        clamp(b[2], w),
        clamp(b[3], h),
    );
    let t = thickness as i64;
    for y in y0..=y1 {
        for x in x0..=x1 {
            let on_edge = x - x0 < t || x1 - x < t || y - y0 < t || y1 - y < t;
            if on_edge {
                img.put_pixel(x as u32, y as u32, color);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blend_and_draw_touch_expected_pixels() {
        let mut img = RgbImage::from_pixel(10, 10, Rgb([0, 0, 0]));
        let mut d = vec![0u8; 100];
        for y in 2..6 {
            for x in 2..6 {
                d[y * 10 + x] = 1;
            }
        }
        let m = BinaryMask::new(10, 10, d).unwrap();
        blend_mask(&mut img, &m, Rgb([200, 100, 0]), 0.5);
        assert_eq!(img.get_pixel(3, 3).0, [100, 50, 0]); // interior: half-blended
        assert_eq!(img.get_pixel(2, 2).0, [200, 100, 0]); // outline: full colour
        assert_eq!(img.get_pixel(8, 8).0, [0, 0, 0]);
        draw_box(&mut img, [0.0, 0.0, 9.0, 9.0], 1, Rgb([1, 2, 3]));
        assert_eq!(img.get_pixel(0, 5).0, [1, 2, 3]);
        assert_ne!(palette(0), palette(1));
    }
}
