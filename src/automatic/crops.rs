//! Crop boxes and crop-frame bookkeeping (segment-anything `utils/amg.py`).

/// A box `[x0, y0, x1, y1]` in pixels (x1, y1 exclusive for crops, inclusive for mask boxes).
pub type BoxXyxy = [i64; 4];

/// Crop boxes for `n_layers` extra layers over an `(h, w)` image and each box's layer index:
/// the whole image first, then `(2^(i+1))²` overlapping crops for layer `i + 1`, in
/// segment-anything's order (x-major: all rows of the first column first).
pub fn generate_crop_boxes(
    im_size: (usize, usize),
    n_layers: usize,
    overlap_ratio: f64,
) -> (Vec<BoxXyxy>, Vec<usize>) {
    let (im_h, im_w) = (im_size.0 as i64, im_size.1 as i64);
    let short_side = im_h.min(im_w) as f64;
    let mut boxes = vec![[0, 0, im_w, im_h]];
    let mut layers = vec![0];
    let crop_len = |orig: i64, n: i64, overlap: i64| -> i64 {
        ((overlap * (n - 1) + orig) as f64 / n as f64).ceil() as i64
    };
    for i_layer in 0..n_layers {
        let n = 1i64 << (i_layer + 1);
        let overlap = (overlap_ratio * short_side * (2.0 / n as f64)) as i64;
        let crop_w = crop_len(im_w, n, overlap);
        let crop_h = crop_len(im_h, n, overlap);
        for i in 0..n {
            let x0 = (crop_w - overlap) * i;
            for j in 0..n {
                let y0 = (crop_h - overlap) * j;
                boxes.push([x0, y0, (x0 + crop_w).min(im_w), (y0 + crop_h).min(im_h)]);
                layers.push(i_layer + 1);
            }
        }
    }
    (boxes, layers)
}

/// Whether a box (already in the image frame) lies within 20 px of an edge of its crop that is
/// not also an edge of the image (`is_box_near_crop_edge`).
pub fn is_box_near_crop_edge(b: &BoxXyxy, crop: &BoxXyxy, orig: &BoxXyxy) -> bool {
    const ATOL: i64 = 20;
    (0..4).any(|k| (b[k] - crop[k]).abs() <= ATOL && (b[k] - orig[k]).abs() > ATOL)
}

/// `xyxy → xywh` as `box_xyxy_to_xywh`.
pub fn xyxy_to_xywh(b: &BoxXyxy) -> [i64; 4] {
    [b[0], b[1], b[2] - b[0], b[3] - b[1]]
}
