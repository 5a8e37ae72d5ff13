//! `rleMerge`: union or intersection of several RLEs.

use super::Rle;
use crate::error::{DataError, Result};

/// `rleMerge`: the union (`intersect = false`) or intersection of `rles`.
///
/// An empty slice gives the `0×0` RLE with no counts, as pycocotools does.
/// Differing sizes are an error (pycocotools silently returns a `0×0` RLE).
///
/// ```
/// use segany_data::mask::{merge, Rle};
/// let a = Rle::new(1, 4, vec![0, 2, 2])?; // 1100
/// let b = Rle::new(1, 4, vec![1, 2, 1])?; // 0110
/// assert_eq!(merge(&[a.clone(), b.clone()], false)?.counts(), &[0, 3, 1]);
/// assert_eq!(merge(&[a, b], true)?.counts(), &[1, 1, 2]);
/// # Ok::<(), segany_data::DataError>(())
/// ```
pub fn merge(rles: &[Rle], intersect: bool) -> Result<Rle> {
    let Some(first) = rles.first() else {
        return Ok(Rle {
            h: 0,
            w: 0,
            counts: Vec::new(),
        });
    };
    let (h, w) = (first.h, first.w);
    if rles.len() == 1 {
        return Ok(first.clone());
    }
    if h * w == 0 {
        return Ok(Rle {
            h,
            w,
            counts: vec![0],
        });
    }
    let mut cnts = first.counts.clone();
    for b in &rles[1..] {
        if b.h != h || b.w != w {
            return Err(DataError::Rle(format!(
                "cannot merge {}x{} with {h}x{w}",
                b.h, b.w
            )));
        }
        let a = std::mem::take(&mut cnts);
        let b = &b.counts;
        let (mut ca, mut cb) = (a[0], b[0]);
        let (mut v, mut va, mut vb) = (false, false, false);
        let (mut ia, mut ib) = (1usize, 1usize);
        let (mut cc, mut ct) = (0u32, 1u64);
        let mut guard = a.len() + b.len() + 2;
        while ct > 0 {
            guard = guard.checked_sub(1).ok_or_else(|| {
                DataError::Rle("merge did not terminate (inconsistent counts)".into())
            })?;
            let c = ca.min(cb);
            cc = cc.wrapping_add(c);
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
            let vp = v;
            v = if intersect { va && vb } else { va || vb };
            if v != vp || ct == 0 {
                cnts.push(cc);
                cc = 0;
            }
        }
    }
    Ok(Rle { h, w, counts: cnts })
}
