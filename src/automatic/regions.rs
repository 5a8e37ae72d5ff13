//! Small-region removal (`utils/amg.py::remove_small_regions`) and mask boxes
//! (`batched_mask_to_box`).

use super::crops::BoxXyxy;

/// 8-connected components of the non-zero pixels of a row-major `h × w` mask. Returns the label
/// image (0 = background, components numbered from 1 in raster order of their first pixel) and
/// each component's pixel count (`sizes[k]` for label `k + 1`).
pub fn connected_components(mask: &[u8], h: usize, w: usize) -> (Vec<u32>, Vec<usize>) {
    let mut labels = vec![0u32; h * w];
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..h * w {
        if mask[start] == 0 || labels[start] != 0 {
            continue;
        }
        let label = sizes.len() as u32 + 1;
        labels[start] = label;
        stack.push(start);
        let mut size = 0;
        while let Some(p) = stack.pop() {
            size += 1;
            let (y, x) = (p / w, p % w);
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (ny, nx) = (y as i64 + dy, x as i64 + dx);
                    if ny < 0 || nx < 0 || ny >= h as i64 || nx >= w as i64 {
                        continue;
                    }
                    let q = ny as usize * w + nx as usize;
                    if mask[q] != 0 && labels[q] == 0 {
                        labels[q] = label;
                        stack.push(q);
                    }
                }
            }
        }
        sizes.push(size);
    }
    (labels, sizes)
}

/// Which kind of small region [`remove_small_regions`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionMode {
    /// Fill background components smaller than the threshold.
    Holes,
    /// Drop foreground components smaller than the threshold (keeping the largest if all are).
    Islands,
}

/// Removes holes or islands with fewer than `area_thresh` pixels (8-connectivity, as
/// `cv2.connectedComponentsWithStats(…, 8)`). Returns whether the mask changed.
pub fn remove_small_regions(
    mask: &mut [u8],
    h: usize,
    w: usize,
    area_thresh: f64,
    mode: RegionMode,
) -> bool {
    let holes = mode == RegionMode::Holes;
    let working: Vec<u8> = mask.iter().map(|&v| u8::from((v != 0) ^ holes)).collect();
    let (labels, sizes) = connected_components(&working, h, w);
    let small: Vec<bool> = sizes.iter().map(|&s| (s as f64) < area_thresh).collect();
    if !small.iter().any(|&s| s) {
        return false;
    }
    // keep[label]: whether pixels with this label end up in the mask.
    let mut keep = vec![false; sizes.len() + 1];
    if holes {
        keep[0] = true;
        for (k, &s) in small.iter().enumerate() {
            keep[k + 1] = s;
        }
    } else {
        let mut any = false;
        for (k, &s) in small.iter().enumerate() {
            keep[k + 1] = !s;
            any |= !s;
        }
        if !any {
            // Every region is small: keep the largest (first on ties, as np.argmax).
            let mut best = 0;
            for (k, &s) in sizes.iter().enumerate() {
                if s > sizes[best] {
                    best = k;
                }
            }
            keep[best + 1] = true;
        }
    }
    for (m, &l) in mask.iter_mut().zip(&labels) {
        *m = u8::from(keep[l as usize]);
    }
    true
}

/// The inclusive `[x0, y0, x1, y1]` box of a row-major mask, `[0, 0, 0, 0]` when empty.
pub fn mask_to_box(mask: &[u8], h: usize, w: usize) -> BoxXyxy {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0usize, 0usize);
    for y in 0..h {
        let row = &mask[y * w..(y + 1) * w];
        let Some(first) = row.iter().position(|&v| v != 0) else {
            continue;
        };
        let last = row.iter().rposition(|&v| v != 0).unwrap_or(first);
        x0 = x0.min(first);
        x1 = x1.max(last);
        y0 = y0.min(y);
        y1 = y;
    }
    if x0 == usize::MAX {
        return [0, 0, 0, 0];
    }
    [x0 as i64, y0 as i64, x1 as i64, y1 as i64]
}
