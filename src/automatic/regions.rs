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
///
/// One pass of byte-wise ORs: each row into the columns' OR (the `x` extent) and into its
/// own (the `y` extent), which vectorise across the row; a row without any pixel costs a
/// vector pass, not a byte-by-byte search.
pub fn mask_to_box(mask: &[u8], h: usize, w: usize) -> BoxXyxy {
    let mut cols = vec![0u8; w];
    let Some((y0, y1)) = rows_and_columns(mask, w, h, &mut cols) else {
        return [0, 0, 0, 0];
    };
    let x0 = cols.iter().position(|&v| v != 0).unwrap_or(0);
    let x1 = cols.iter().rposition(|&v| v != 0).unwrap_or(x0);
    [x0 as i64, y0 as i64, x1 as i64, y1 as i64]
}

segany_core::avx2_dispatch! {
    /// The first and last row of the `h` rows of `w` bytes in `mask` with a nonzero byte
    /// (`None` if none), with every row ORed into `cols (w)`. Built for the CPU's vector
    /// width.
    fn rows_and_columns(mask: &[u8], w: usize, h: usize, cols: &mut [u8]) -> Option<(usize, usize)>
        => rows_and_columns_body
}

#[inline(always)]
fn rows_and_columns_body(
    mask: &[u8],
    w: usize,
    h: usize,
    cols: &mut [u8],
) -> Option<(usize, usize)> {
    let mut rows = None;
    for (y, row) in mask.chunks_exact(w.max(1)).take(h).enumerate() {
        let mut any = 0u8;
        for (c, &v) in cols.iter_mut().zip(row) {
            *c |= v;
            any |= v;
        }
        if any != 0 {
            rows = Some((rows.map_or(y, |(y0, _)| y0), y));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The box by definition (every nonzero pixel's coordinates, min and max).
    fn box_by_definition(mask: &[u8], h: usize, w: usize) -> BoxXyxy {
        let on: Vec<(usize, usize)> = (0..h * w)
            .filter(|&i| mask[i] != 0)
            .map(|i| (i % w, i / w))
            .collect();
        if on.is_empty() {
            return [0, 0, 0, 0];
        }
        let x0 = on.iter().map(|p| p.0).min().unwrap_or(0);
        let x1 = on.iter().map(|p| p.0).max().unwrap_or(0);
        let y0 = on.iter().map(|p| p.1).min().unwrap_or(0);
        let y1 = on.iter().map(|p| p.1).max().unwrap_or(0);
        [x0 as i64, y0 as i64, x1 as i64, y1 as i64]
    }

    /// Empty masks, one pixel (at the corners and inside), values other than 1, and widths
    /// that are no multiple of a vector.
    #[test]
    fn mask_to_box_matches_definition() {
        for (h, w) in [(1, 1), (7, 130), (33, 64), (20, 3)] {
            let mut cases = vec![vec![0u8; h * w]];
            for i in [0, h * w - 1, (h / 2) * w + w / 3, w - 1, (h - 1) * w] {
                let mut m = vec![0u8; h * w];
                m[i] = 255;
                cases.push(m);
            }
            cases.push(
                (0..h * w)
                    .map(|i| u8::from(i * 7919 % 97 == 5) * 3)
                    .collect(),
            );
            for m in cases {
                assert_eq!(
                    mask_to_box(&m, h, w),
                    box_by_definition(&m, h, w),
                    "{h} × {w}"
                );
            }
        }
    }
}
