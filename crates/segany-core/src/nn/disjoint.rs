//! An output buffer that parallel tasks write in disjoint pieces which a slice split cannot
//! express (strided bands, scattered rows).

use std::marker::PhantomData;

/// Hands out pieces of one `&mut [f32]` to parallel tasks. Each piece's bounds are checked;
/// that no two live pieces overlap is the caller's promise ([`DisjointOut::piece`]).
pub(crate) struct DisjointOut<'a> {
    ptr: *mut f32,
    len: usize,
    _buffer: PhantomData<&'a mut [f32]>,
}

// SAFETY: the pointer comes from a `&'a mut [f32]` held for `'a`; tasks only reach it through
// `piece`, whose callers promise disjoint pieces.
unsafe impl Sync for DisjointOut<'_> {}

impl<'a> DisjointOut<'a> {
    pub(crate) fn new(out: &'a mut [f32]) -> Self {
        Self {
            ptr: out.as_mut_ptr(),
            len: out.len(),
            _buffer: PhantomData,
        }
    }

    /// The `len` values from `offset`.
    ///
    /// # Safety
    /// No other piece alive at the same time may overlap this one.
    ///
    /// Panics if the piece runs past the buffer.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn piece(&self, offset: usize, len: usize) -> &mut [f32] {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "disjoint output: {len} values from {offset} in a buffer of {}",
            self.len
        );
        // SAFETY: in bounds (asserted); exclusive by the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn parallel_pieces_fill_the_buffer() {
        let mut buf = vec![0f32; 12];
        let out = DisjointOut::new(&mut buf);
        // Every third value per task: strided pieces of one value each.
        (0..3).into_par_iter().for_each(|t| {
            for i in (t..12).step_by(3) {
                // SAFETY: task `t` alone writes the indices ≡ t (mod 3).
                let piece = unsafe { out.piece(i, 1) };
                piece[0] = t as f32;
            }
        });
        assert_eq!(buf, [0., 1., 2., 0., 1., 2., 0., 1., 2., 0., 1., 2.]);
    }

    #[test]
    #[should_panic(expected = "4 values from 10 in a buffer of 12")]
    fn refuses_pieces_past_the_end() {
        let mut buf = vec![0f32; 12];
        let out = DisjointOut::new(&mut buf);
        // SAFETY: the only piece.
        let _ = unsafe { out.piece(10, 4) };
    }
}
