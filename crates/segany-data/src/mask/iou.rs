//! `rleIou`: mask IoU between RLE sets.

use super::{bbox_iou, Rle};

/// `rleIou`: `result[d][g]` is the IoU of detection `d` and ground truth `g`
/// (pycocotools' `mask.iou(dt, gt, iscrowd)` layout). Boxes are compared
/// first, as in C: pairs whose boxes do not overlap get 0; pairs of different
/// sizes get -1; for a crowd ground truth the union is the detection's area.
///
/// ```
/// use segany_data::mask::{rle_iou, Rle};
/// let a = Rle::new(1, 4, vec![0, 2, 2])?; // 1100
/// let b = Rle::new(1, 4, vec![1, 2, 1])?; // 0110
/// assert_eq!(rle_iou(&[a], &[b], &[false])[0][0], 1.0 / 3.0);
/// # Ok::<(), segany_data::DataError>(())
/// ```
pub fn rle_iou(dt: &[Rle], gt: &[Rle], iscrowd: &[bool]) -> Vec<Vec<f64>> {
    let db: Vec<[f64; 4]> = dt.iter().map(Rle::to_bbox).collect();
    let gb: Vec<[f64; 4]> = gt.iter().map(Rle::to_bbox).collect();
    let mut o = bbox_iou(&db, &gb, iscrowd);
    for (g, gr) in gt.iter().enumerate() {
        let crowd = iscrowd.get(g).copied().unwrap_or(false);
        for (d, dr) in dt.iter().enumerate() {
            if o[d][g] <= 0.0 {
                continue;
            }
            if dr.h != gr.h || dr.w != gr.w {
                o[d][g] = -1.0;
                continue;
            }
            let (a, b) = (&dr.counts, &gr.counts);
            let (mut ca, mut cb) = (a[0], b[0]);
            let (mut va, mut vb) = (false, false);
            let (mut ia, mut ib) = (1usize, 1usize);
            let (mut i, mut u) = (0u32, 0u32);
            let mut ct = 1u64;
            let mut guard = a.len() + b.len() + 2;
            while ct > 0 && guard > 0 {
                guard -= 1;
                let c = ca.min(cb);
                if va || vb {
                    u = u.wrapping_add(c);
                    if va && vb {
                        i = i.wrapping_add(c);
                    }
                }
                ca -= c;
                if ca == 0 && ia < a.len() {
                    ca = a[ia];
                    ia += 1;
                    va = !va;
                }
                cb -= c;
                if cb == 0 && ib < b.len() {
                    cb = b[ib];
                    ib += 1;
                    vb = !vb;
                }
                ct = u64::from(ca) + u64::from(cb);
            }
            if i == 0 {
                u = 1;
            } else if crowd {
                u = dr.area();
            }
            o[d][g] = f64::from(i) / f64::from(u);
        }
    }
    o
}
