//! Compressed RLE strings: `rleToString` / `rleFrString`.
//!
//! LEB128-like, 6 bits per character (ASCII 48–111); from the fourth count on,
//! each count is stored as the difference to the count two places earlier.

use std::fmt;

use super::Rle;
use crate::error::{DataError, Result};

impl fmt::Display for Rle {
    /// `rleToString`: the compressed COCO string.
    ///
    /// ```
    /// use segany_data::mask::Rle;
    /// assert_eq!(Rle::new(10, 10, vec![100])?.to_string(), "T3");
    /// # Ok::<(), segany_data::DataError>(())
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(self.counts.len() * 2);
        for (i, &c) in self.counts.iter().enumerate() {
            let mut x = i64::from(c);
            if i > 2 {
                x -= i64::from(self.counts[i - 2]);
            }
            let mut more = true;
            while more {
                let mut c = (x & 0x1f) as u8;
                x >>= 5;
                more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    c |= 0x20;
                }
                s.push(char::from(c + 48));
            }
        }
        f.write_str(&s)
    }
}

impl Rle {
    /// `rleFrString`: parses a compressed COCO string for an `h × w` image.
    ///
    /// Unlike the C code, malformed input is an error: characters outside
    /// 48–111, a truncated final group, a group longer than 12 characters, negative
    /// or over-large counts, and counts that do not sum to `h * w`.
    ///
    /// ```
    /// use segany_data::mask::Rle;
    /// let r = Rle::from_string("T3", 10, 10)?;
    /// assert_eq!(r.counts(), &[100]);
    /// assert!(Rle::from_string("T", 10, 10).is_err());
    /// # Ok::<(), segany_data::DataError>(())
    /// ```
    pub fn from_string(s: &str, h: usize, w: usize) -> Result<Self> {
        Self::from_bytes(s.as_bytes(), h, w)
    }

    /// [`Rle::from_string`] on raw bytes (pycocotools also accepts `bytes`).
    pub fn from_bytes(s: &[u8], h: usize, w: usize) -> Result<Self> {
        let mut counts: Vec<u32> = Vec::new();
        let mut p = 0usize;
        while p < s.len() {
            let start = p;
            let (mut x, mut k, mut more) = (0i64, 0u32, true);
            while more {
                let Some(&ch) = s.get(p) else {
                    return Err(err(start, "string ends inside a count"));
                };
                if !(48..=111).contains(&ch) {
                    return Err(err(p, &format!("character {ch:#04x} outside '0'..='o'")));
                }
                if k >= 12 {
                    return Err(err(start, "count longer than 12 characters"));
                }
                let c = i64::from(ch - 48);
                x |= (c & 0x1f) << (5 * k);
                more = c & 0x20 != 0;
                p += 1;
                k += 1;
                if !more && (c & 0x10) != 0 {
                    x |= -1i64 << (5 * k);
                }
            }
            let m = counts.len();
            if m > 2 {
                x += i64::from(counts[m - 2]);
            }
            let c = u32::try_from(x)
                .map_err(|_| err(start, &format!("count {x} outside 0..=u32::MAX")))?;
            counts.push(c);
        }
        Rle::new(h, w, counts)
    }
}

fn err(position: usize, message: &str) -> DataError {
    DataError::RleString {
        position,
        message: message.to_string(),
    }
}
