//! Per-thread scratch buffers for kernels' temporaries.
//!
//! A kernel that runs per prompt and per tile on rayon's threads needs a few temporaries of the
//! same sizes each time (scores, coefficients, a tile's update). Fresh `vec![0.0; len]`s cost a
//! zero-fill (and for large ones fresh pages) every time, although the kernel overwrites every
//! value before reading it. A [`Scratch`] comes from a small stack kept per thread instead.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Most buffers a thread keeps.
const MAX_KEPT: usize = 8;
/// Largest buffer a thread keeps, in values (16 MiB); larger ones are freed after use.
const MAX_KEPT_LEN: usize = 4 << 20;

thread_local! {
    static KEPT: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// `len` values of unspecified contents (stale values of an earlier use on this thread, or
/// zeros): the caller writes every value before reading it. Dropping it gives the buffer back
/// to this thread's stack.
///
/// ```
/// use segany_core::nn::Scratch;
/// let mut s = Scratch::take(4);
/// s.copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
/// assert_eq!(s.iter().sum::<f32>(), 10.0);
/// ```
pub struct Scratch {
    buf: Vec<f32>,
    len: usize,
}

impl Scratch {
    /// A buffer of `len` values (see the type's docs on their contents).
    pub fn take(len: usize) -> Self {
        let kept = KEPT.with(|k| {
            let mut k = k.borrow_mut();
            let best = k
                .iter()
                .enumerate()
                .filter(|(_, b)| b.len() >= len)
                .min_by_key(|(_, b)| b.len())
                .map(|(i, _)| i);
            match best {
                Some(i) => Some(k.swap_remove(i)),
                // None large enough: grow the largest rather than keep one more.
                None => k
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, b)| b.len())
                    .map(|(i, _)| i)
                    .map(|i| k.swap_remove(i)),
            }
        });
        let mut buf = kept.unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        Self { buf, len }
    }
}

impl Deref for Scratch {
    type Target = [f32];
    #[inline]
    fn deref(&self) -> &[f32] {
        &self.buf[..self.len]
    }
}

impl DerefMut for Scratch {
    #[inline]
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.len]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.is_empty() || buf.len() > MAX_KEPT_LEN {
            return;
        }
        // `try_with`: during thread teardown the stack may be gone; the buffer is freed then.
        let _ = KEPT.try_with(|k| {
            let mut k = k.borrow_mut();
            k.push(buf);
            if k.len() > MAX_KEPT {
                // Free the smallest.
                if let Some(i) = k
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, b)| b.len())
                    .map(|(i, _)| i)
                {
                    k.swap_remove(i);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buffers of the asked length; a given-back buffer is reused (no new allocation) by the
    /// next take of at most its length, and two live buffers never alias.
    #[test]
    fn reuses_given_back_buffers() {
        let a = Scratch::take(100);
        let pa = a.as_ptr();
        drop(a);
        let b = Scratch::take(60);
        assert_eq!(b.len(), 60);
        assert_eq!(b.as_ptr(), pa, "the kept buffer is reused");
        let c = Scratch::take(60);
        assert_ne!(c.as_ptr(), b.as_ptr(), "live buffers are distinct");
        assert_eq!(c.len(), 60);
        drop((b, c));
        // Larger than anything kept: grown from a kept buffer, of the asked length.
        let d = Scratch::take(1000);
        assert_eq!(d.len(), 1000);
        // Too large to keep: freed on drop, never handed out again.
        drop(d);
        let big = Scratch::take(MAX_KEPT_LEN + 1);
        assert_eq!(big.len(), MAX_KEPT_LEN + 1);
        drop(big);
        KEPT.with(|k| {
            let k = k.borrow();
            assert!(k.len() <= MAX_KEPT);
            assert!(k.iter().all(|b| b.len() <= MAX_KEPT_LEN));
        });
    }
}
