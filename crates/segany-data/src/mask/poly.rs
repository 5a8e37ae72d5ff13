//! Polygon and box rasterisation: `rleFrPoly`, `rleFrBbox` and the polygon
//! branch of `frPyObjects`.

use super::rle::checked_area;
use super::Rle;
use crate::error::{DataError, Result};

/// Upper bound on the boundary walk of one polygon (the sum over edges of
/// `max(|dx|, |dy|) + 1` at 5× resolution, the size `maskApi.c` allocates).
/// Larger polygons are rejected instead of allocating without bound; a
/// polygon whose perimeter is 3 million pixels is still accepted.
pub const MAX_POLYGON_STEPS: u64 = 1 << 24;

const SCALE: f64 = 5.0;

/// C's `(int)` conversion of a double as compiled on x86-64 (`cvttsd2si`):
/// truncation toward zero, and `INT_MIN` for NaN or out-of-range values.
fn c_int(x: f64) -> i64 {
    if x.is_nan() || x >= 2_147_483_648.0 || x <= -2_147_483_649.0 {
        i64::from(i32::MIN)
    } else {
        i64::from(x as i32)
    }
}

impl Rle {
    /// `rleFrPoly`: rasterises one polygon `[x0, y0, x1, y1, …]` into an
    /// `h × w` RLE exactly as pycocotools does (a trailing odd coordinate is
    /// ignored, as `frPoly` passes `int(len(p)/2)` vertices).
    ///
    /// Errors on non-finite or huge coordinates (beyond C `int` range after
    /// the 5× upsampling), a boundary walk longer than
    /// [`MAX_POLYGON_STEPS`], and an empty (`h` or `w` = 0) image.
    ///
    /// ```
    /// use segany_data::mask::Rle;
    /// // string from pycocotools' frPyObjects on the same input
    /// let r = Rle::from_polygon(&[1.0, 1.0, 4.0, 1.0, 1.0, 4.0], 6, 6)?;
    /// assert_eq!(r.to_string(), "724Ob0");
    /// # Ok::<(), segany_data::DataError>(())
    /// ```
    pub fn from_polygon(xy: &[f64], h: usize, w: usize) -> Result<Rle> {
        let area = checked_area(h, w)?;
        if h == 0 || w == 0 {
            return Err(DataError::Polygon(format!(
                "cannot rasterise onto an empty {h}x{w} image"
            )));
        }
        let k = xy.len() / 2;
        let mut xs = Vec::with_capacity(k + 1);
        let mut ys = Vec::with_capacity(k + 1);
        for (j, pair) in xy.chunks_exact(2).enumerate() {
            for (v, out) in [(pair[0], &mut xs), (pair[1], &mut ys)] {
                let t = SCALE * v + 0.5;
                if !t.is_finite() || t >= 2_147_483_648.0 || t <= -2_147_483_649.0 {
                    return Err(DataError::Polygon(format!(
                        "vertex {j} coordinate {v} is not finite or out of range"
                    )));
                }
                out.push(i64::from(t as i32));
            }
        }
        if k > 0 {
            xs.push(xs[0]);
            ys.push(ys[0]);
        }
        let mut steps: u64 = 0;
        for j in 0..k {
            let d = (xs[j] - xs[j + 1]).abs().max((ys[j] - ys[j + 1]).abs()) as u64;
            steps = steps.saturating_add(d + 1);
        }
        if steps > MAX_POLYGON_STEPS {
            return Err(DataError::Polygon(format!(
                "boundary walk of {steps} steps exceeds {MAX_POLYGON_STEPS}"
            )));
        }

        // Walk the upsampled boundary densely and keep, on the fly, the
        // points where the column changes (the C code stores the walk first).
        let mut a: Vec<u32> = Vec::new();
        let mut prev: Option<(i64, i64)> = None;
        let (hf, wf) = (h as f64, w as f64);
        let mut visit = |u: i64, v: i64| {
            if let Some((pu, pv)) = prev {
                if u != pu {
                    let xd = (if u < pu { u } else { u - 1 }) as f64;
                    let xd = (xd + 0.5) / SCALE - 0.5;
                    if xd.floor() == xd && xd >= 0.0 && xd <= wf - 1.0 {
                        let mut yd = (if v < pv { v } else { pv }) as f64;
                        yd = (yd + 0.5) / SCALE - 0.5;
                        if yd < 0.0 {
                            yd = 0.0;
                        } else if yd > hf {
                            yd = hf;
                        }
                        yd = yd.ceil();
                        let idx = (xd as u64) * (h as u64) + (yd as u64);
                        a.push(idx as u32);
                    }
                }
            }
            prev = Some((u, v));
        };
        for j in 0..k {
            let (mut x0, mut x1, mut y0, mut y1) = (xs[j], xs[j + 1], ys[j], ys[j + 1]);
            let dx = (x1 - x0).abs();
            let dy = (y0 - y1).abs();
            let flip = (dx >= dy && x0 > x1) || (dx < dy && y0 > y1);
            if flip {
                std::mem::swap(&mut x0, &mut x1);
                std::mem::swap(&mut y0, &mut y1);
            }
            if dx >= dy {
                let s = (y1 - y0) as f64 / dx as f64;
                for d in 0..=dx {
                    let t = if flip { dx - d } else { d };
                    visit(t + x0, c_int(y0 as f64 + s * t as f64 + 0.5));
                }
            } else {
                let s = (x1 - x0) as f64 / dy as f64;
                for d in 0..=dy {
                    let t = if flip { dy - d } else { d };
                    visit(c_int(x0 as f64 + s * t as f64 + 0.5), t + y0);
                }
            }
        }

        // Run-length encode the sorted boundary indices.
        a.push(area as u32);
        a.sort_unstable();
        let mut p = 0u32;
        for v in a.iter_mut() {
            let t = *v;
            *v = v.wrapping_sub(p);
            p = t;
        }
        let mut b: Vec<u32> = Vec::with_capacity(a.len());
        let mut j = 0;
        b.push(a[j]);
        j += 1;
        while j < a.len() {
            if a[j] > 0 {
                b.push(a[j]);
                j += 1;
            } else {
                j += 1;
                if j < a.len() {
                    if let Some(last) = b.last_mut() {
                        *last = last.wrapping_add(a[j]);
                    }
                    j += 1;
                }
            }
        }
        Rle::new(h, w, b)
    }

    /// `rleFrBbox`: rasterises an `[x, y, w, h]` box through its polygon.
    ///
    /// ```
    /// use segany_data::mask::Rle;
    /// let r = Rle::from_bbox([1.0, 1.0, 2.0, 3.0], 5, 5)?;
    /// assert_eq!(r.area(), 6);
    /// # Ok::<(), segany_data::DataError>(())
    /// ```
    pub fn from_bbox(bb: [f64; 4], h: usize, w: usize) -> Result<Rle> {
        let (xs, ys) = (bb[0], bb[1]);
        let (xe, ye) = (xs + bb[2], ys + bb[3]);
        Rle::from_polygon(&[xs, ys, xs, ye, xe, ye, xe, ys], h, w)
    }
}

/// `mask.frPyObjects(segmentation, h, w)` for a COCO polygon list, as
/// `refer.getMask` calls it: one RLE per polygon.
///
/// Like pycocotools, the first polygon decides the branch: an empty list, or
/// a first polygon with fewer than 4 or exactly 4 coordinates (pycocotools
/// raises for these), is an error.
///
/// ```
/// use segany_data::mask::polygons_to_rles;
/// let rles = polygons_to_rles(&[vec![0.0, 0.0, 3.0, 0.0, 0.0, 3.0]], 4, 4)?;
/// assert_eq!(rles.len(), 1);
/// assert!(polygons_to_rles(&[vec![0.0, 0.0, 3.0, 3.0]], 4, 4).is_err());
/// # Ok::<(), segany_data::DataError>(())
/// ```
pub fn polygons_to_rles(polygons: &[Vec<f64>], h: usize, w: usize) -> Result<Vec<Rle>> {
    let Some(first) = polygons.first() else {
        return Err(DataError::Polygon("empty polygon list".into()));
    };
    if first.len() <= 4 {
        return Err(DataError::Polygon(format!(
            "first polygon has {} coordinates; pycocotools needs more than 4",
            first.len()
        )));
    }
    polygons
        .iter()
        .map(|p| Rle::from_polygon(p, h, w))
        .collect()
}
