//! Row-major binary (or count) masks.

use crate::error::{DataError, Result};

/// A row-major `height × width` byte mask.
///
/// Values are usually 0/1; sums of several decoded masks (as `refer.getMask`
/// produces) may hold larger counts.
///
/// ```
/// use segany_data::mask::Mask;
/// let mut m = Mask::zeros(2, 3);
/// m.set(1, 2, 1);
/// assert_eq!(m.count_nonzero(), 1);
/// assert_eq!(m.get(1, 2), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    height: usize,
    width: usize,
    data: Vec<u8>,
}

impl Mask {
    /// An all-zero mask.
    pub fn zeros(height: usize, width: usize) -> Self {
        Self {
            height,
            width,
            data: vec![0; height * width],
        }
    }

    /// Wraps row-major bytes; errors when `data.len() != height * width`.
    pub fn from_vec(height: usize, width: usize, data: Vec<u8>) -> Result<Self> {
        if height.checked_mul(width) != Some(data.len()) {
            return Err(DataError::Rle(format!(
                "mask of {height}x{width} given {} bytes",
                data.len()
            )));
        }
        Ok(Self {
            height,
            width,
            data,
        })
    }

    /// Number of rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Number of columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Row-major bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.data
    }

    /// Consumes the mask, returning its row-major bytes.
    pub fn into_vec(self) -> Vec<u8> {
        self.data
    }

    /// Value at row `y`, column `x` (0 outside the mask).
    pub fn get(&self, y: usize, x: usize) -> u8 {
        if y < self.height && x < self.width {
            self.data[y * self.width + x]
        } else {
            0
        }
    }

    /// Sets row `y`, column `x` (ignored outside the mask).
    pub fn set(&mut self, y: usize, x: usize, v: u8) {
        if y < self.height && x < self.width {
            self.data[y * self.width + x] = v;
        }
    }

    /// Number of non-zero pixels.
    pub fn count_nonzero(&self) -> u64 {
        self.data.iter().filter(|&&v| v != 0).count() as u64
    }

    /// A copy with every non-zero value set to 1.
    pub fn binarized(&self) -> Self {
        Self {
            height: self.height,
            width: self.width,
            data: self.data.iter().map(|&v| u8::from(v != 0)).collect(),
        }
    }

    /// Adds `other` pixel-wise with `u8` wrap-around, like numpy's
    /// `np.sum(..., axis=2).astype(np.uint8)`.
    pub fn wrapping_add_assign(&mut self, other: &Mask) -> Result<()> {
        self.check_same_size(other)?;
        for (a, b) in self.data.iter_mut().zip(&other.data) {
            *a = a.wrapping_add(*b);
        }
        Ok(())
    }

    /// Errors unless `other` has the same size.
    pub fn check_same_size(&self, other: &Mask) -> Result<()> {
        if self.height != other.height || self.width != other.width {
            return Err(DataError::Rle(format!(
                "mask sizes differ: {}x{} vs {}x{}",
                self.height, self.width, other.height, other.width
            )));
        }
        Ok(())
    }
}
