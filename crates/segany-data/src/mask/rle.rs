//! The run-length encoding type, `rleEncode`, `rleDecode` and `rleArea`.

use super::Mask;
use crate::error::{DataError, Result};

/// Largest `height × width` that [`Rle::decode`] materialises (256 Mi pixels),
/// so a hostile `size` field cannot trigger an unbounded allocation.
pub const MAX_PIXELS: u64 = 1 << 28;

/// A COCO run-length encoding: `h × w` image, column-major runs alternating
/// 0, 1, 0, … starting with zeros.
///
/// Invariant: `h * w` fits in `u32` (as in `maskApi.c`, whose counts are
/// `uint`) and the counts sum to `h * w`.
///
/// ```
/// use segany_data::mask::Rle;
/// let r = Rle::new(2, 2, vec![1, 2, 1])?;
/// assert_eq!(r.area(), 2);
/// assert!(Rle::new(2, 2, vec![1, 2]).is_err()); // sums to 3, not 4
/// # Ok::<(), segany_data::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rle {
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) counts: Vec<u32>,
}

impl Rle {
    /// Validated constructor.
    pub fn new(h: usize, w: usize, counts: Vec<u32>) -> Result<Self> {
        let area = checked_area(h, w)?;
        let sum: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        if sum != area {
            return Err(DataError::Rle(format!(
                "counts sum to {sum} but size is {h}x{w} = {area}"
            )));
        }
        Ok(Self { h, w, counts })
    }

    /// Image height.
    pub fn height(&self) -> usize {
        self.h
    }

    /// Image width.
    pub fn width(&self) -> usize {
        self.w
    }

    /// The run lengths.
    pub fn counts(&self) -> &[u32] {
        &self.counts
    }

    /// `rleEncode`: encodes a mask (values compared byte-wise, as in C).
    ///
    /// ```
    /// use segany_data::mask::{Mask, Rle};
    /// let m = Mask::from_vec(2, 2, vec![0, 1, 1, 1])?;
    /// // column-major: (0,0)=0 (1,0)=1 (0,1)=1 (1,1)=1
    /// assert_eq!(Rle::encode(&m)?.counts(), &[1, 3]);
    /// # Ok::<(), segany_data::DataError>(())
    /// ```
    pub fn encode(mask: &Mask) -> Result<Self> {
        let (h, w) = (mask.height(), mask.width());
        checked_area(h, w)?;
        let data = mask.as_slice();
        let mut counts = Vec::new();
        let (mut p, mut c) = (0u8, 0u32);
        for x in 0..w {
            for y in 0..h {
                let t = data[y * w + x];
                if t != p {
                    counts.push(c);
                    c = 0;
                    p = t;
                }
                c += 1;
            }
        }
        counts.push(c);
        Ok(Self { h, w, counts })
    }

    /// `rleDecode`: the binary mask (0/1), row-major.
    ///
    /// Errors when `h * w` exceeds [`MAX_PIXELS`].
    pub fn decode(&self) -> Result<Mask> {
        let area = checked_area(self.h, self.w)?;
        if area > MAX_PIXELS {
            return Err(DataError::Rle(format!(
                "{}x{} exceeds the decode limit of {MAX_PIXELS} pixels",
                self.h, self.w
            )));
        }
        let mut col_major = Vec::with_capacity(area as usize);
        let mut v = 0u8;
        for &c in &self.counts {
            col_major.resize(col_major.len() + c as usize, v);
            v = 1 - v;
        }
        let (h, w) = (self.h, self.w);
        let mut data = vec![0u8; h * w];
        for x in 0..w {
            for y in 0..h {
                data[y * w + x] = col_major[x * h + y];
            }
        }
        Mask::from_vec(h, w, data)
    }

    /// `rleArea`: number of foreground pixels.
    pub fn area(&self) -> u32 {
        self.counts
            .iter()
            .skip(1)
            .step_by(2)
            .fold(0u32, |a, &c| a.wrapping_add(c))
    }
}

/// `h * w` as `u64`, erroring when it does not fit the C `uint` counts.
pub(crate) fn checked_area(h: usize, w: usize) -> Result<u64> {
    let area = (h as u64).checked_mul(w as u64);
    match area {
        Some(a) if a <= u64::from(u32::MAX) => Ok(a),
        _ => Err(DataError::Rle(format!("size {h}x{w} too large"))),
    }
}
