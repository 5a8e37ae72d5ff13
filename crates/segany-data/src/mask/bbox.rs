//! `rleToBbox` and `bbIou`.

use super::Rle;

impl Rle {
    /// `rleToBbox`: the tight `[x, y, w, h]` box (all zeros when empty).
    ///
    /// ```
    /// use segany_data::mask::Rle;
    /// // 3×3 image, foreground at column 1, rows 1..=2.
    /// let r = Rle::new(3, 3, vec![4, 2, 3])?;
    /// assert_eq!(r.to_bbox(), [1.0, 1.0, 1.0, 2.0]);
    /// # Ok::<(), segany_data::DataError>(())
    /// ```
    pub fn to_bbox(&self) -> [f64; 4] {
        let (h, w) = (self.h as u32, self.w as u32);
        let m = (self.counts.len() / 2) * 2;
        if m == 0 || h == 0 {
            return [0.0; 4];
        }
        let (mut xs, mut ys, mut xe, mut ye) = (w, h, 0u32, 0u32);
        let (mut cc, mut xp) = (0u32, 0u32);
        for j in 0..m {
            cc = cc.wrapping_add(self.counts[j]);
            let t = cc.wrapping_sub((j % 2) as u32);
            let y = t % h;
            let x = (t - y) / h;
            if j % 2 == 0 {
                xp = x;
            } else if xp < x {
                ys = 0;
                ye = h - 1;
            }
            xs = xs.min(x);
            xe = xe.max(x);
            ys = ys.min(y);
            ye = ye.max(y);
        }
        [
            f64::from(xs),
            f64::from(ys),
            f64::from(xe.wrapping_sub(xs).wrapping_add(1)),
            f64::from(ye.wrapping_sub(ys).wrapping_add(1)),
        ]
    }
}

/// `bbIou`: IoU of `[x, y, w, h]` boxes, `result[d][g]` for detection `d`
/// and ground truth `g`; for a crowd ground truth the union is the
/// detection's area.
///
/// ```
/// use segany_data::mask::bbox_iou;
/// let o = bbox_iou(&[[0.0, 0.0, 2.0, 2.0]], &[[1.0, 0.0, 2.0, 2.0]], &[false]);
/// assert_eq!(o[0][0], 2.0 / 6.0);
/// ```
pub fn bbox_iou(dt: &[[f64; 4]], gt: &[[f64; 4]], iscrowd: &[bool]) -> Vec<Vec<f64>> {
    let mut o = vec![vec![0.0; gt.len()]; dt.len()];
    for (g, gb) in gt.iter().enumerate() {
        let ga = gb[2] * gb[3];
        let crowd = iscrowd.get(g).copied().unwrap_or(false);
        for (d, db) in dt.iter().enumerate() {
            let da = db[2] * db[3];
            let w = (db[2] + db[0]).min(gb[2] + gb[0]) - db[0].max(gb[0]);
            if w <= 0.0 {
                continue;
            }
            let h = (db[3] + db[1]).min(gb[3] + gb[1]) - db[1].max(gb[1]);
            if h <= 0.0 {
                continue;
            }
            let i = w * h;
            let u = if crowd { da } else { da + ga - i };
            o[d][g] = i / u;
        }
    }
    o
}
