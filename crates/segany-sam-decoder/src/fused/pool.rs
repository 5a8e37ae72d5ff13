//! Large buffers reused from one decoder batch to the next on the same image.
//!
//! The factored path needs, per batch of 64 prompts, every block's attention probabilities
//! (58 MB each; until the norm statistics came from the factored form, also the first
//! block's image tokens, 268 MB). Fresh allocations of that size are new pages each batch,
//! which the kernel zeroes on first touch (~13 % of the decoder's time with the tokens). A
//! prepared image keeps a pool of them instead, so only its first batch pays.

use std::sync::{Arc, Mutex};

/// Most buffers a pool keeps; more are freed when given back.
const MAX_BUFFERS: usize = 8;

/// A pool of `f32` buffers shared by the clones of one prepared image. The memory stays
/// allocated while the image is prepared (up to [`MAX_BUFFERS`] buffers of the largest sizes
/// the batches needed) and is freed with it.
#[derive(Debug, Clone, Default)]
pub struct BufferPool(Arc<Mutex<Vec<Vec<f32>>>>);

impl BufferPool {
    /// A buffer of `len` values: a kept one when one is large enough (its contents are stale
    /// values of an earlier batch: the caller overwrites every value), else a fresh zeroed one.
    pub fn take(&self, len: usize) -> Vec<f32> {
        let kept = {
            let mut bufs = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let best = bufs
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= len)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
            best.map(|i| bufs.swap_remove(i))
        };
        match kept {
            Some(mut v) => {
                // Within capacity: no reallocation, no new pages.
                v.resize(len, 0.0);
                v
            }
            // Ordinary pages, not `zeroed_output`'s huge ones: a pooled buffer is filled once
            // per prepared image, and asking for huge pages can make the kernel compact memory
            // first. Three interleaved automatic-mask runs (64 prompts per batch, right after
            // the encoder): first batch 0.37-0.45 s with ordinary pages, 0.72 s with huge
            // ones; the later batches ~4 % slower (TLB misses); 0.1 s less in total.
            None => vec![0f32; len],
        }
    }

    /// Gives `v` back for a later [`Self::take`].
    pub fn give(&self, v: Vec<f32>) {
        if v.capacity() == 0 {
            return;
        }
        let mut bufs = self.0.lock().unwrap_or_else(|e| e.into_inner());
        bufs.push(v);
        if bufs.len() > MAX_BUFFERS {
            // Keep the largest.
            bufs.sort_by_key(|b| std::cmp::Reverse(b.capacity()));
            bufs.truncate(MAX_BUFFERS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_the_smallest_buffer_that_fits() {
        let pool = BufferPool::default();
        let small = pool.take(10);
        let large = pool.take(1000);
        assert_eq!((small.len(), large.len()), (10, 1000));
        let (ps, pl) = (small.as_ptr(), large.as_ptr());
        pool.give(large);
        pool.give(small);
        let v = pool.take(8);
        assert_eq!((v.len(), v.as_ptr()), (8, ps));
        let w = pool.take(500);
        assert_eq!((w.len(), w.as_ptr()), (500, pl));
        // Nothing left that fits: a fresh, zeroed buffer.
        let fresh = pool.take(20);
        assert!(fresh.len() == 20 && fresh.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn keeps_a_bounded_number_of_the_largest() {
        let pool = BufferPool::default();
        for len in 1..=MAX_BUFFERS + 3 {
            pool.give(vec![0f32; len * 10]);
        }
        let kept = pool.0.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(kept.len(), MAX_BUFFERS);
        assert!(kept.iter().all(|b| b.capacity() >= 40));
    }
}
