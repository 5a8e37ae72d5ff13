//! Large kernel outputs.
//!
//! A kernel output of hundreds of megabytes made on every call (per-prompt image tokens of the
//! decoder's unfactored path, upscaled masks) is a fresh `mmap` each time, and filling it
//! faults once per 4 KiB page: ~130,000 faults for 268 MB, a sixth of a 64-prompt decoder batch
//! when measured. Backed by transparent huge pages the same fill faults ~500 times. (Buffers
//! kept and reused across calls are better on ordinary pages: asking for huge pages can make
//! the kernel compact memory first, a cost that only pays off when it is paid often.)

/// A zeroed vector of `len` values for a large output that a kernel fills once per call (per-
/// prompt image tokens: 268 MB per decoder batch of 64; a linear layer's output, such as the
/// 50 MB MLP activations of SAM ViT-B's 4096 tokens: 370,000 faults per encoder pass on
/// ordinary pages, ~95,000 with this, and the pass 10% faster on 2 Zen 5 cores). On Linux
/// the pages get backed by transparent huge pages where the system allows it
/// (`madvise(MADV_HUGEPAGE)`, a hint), so filling it takes one page fault per 2 MiB instead of
/// one per 4 KiB.
pub fn zeroed_output(len: usize) -> Vec<f32> {
    let mut v = vec![0f32; len];
    advise_huge_pages(v.as_mut_ptr(), len);
    v
}

/// Asks the kernel to back the whole 2 MiB pages inside the `len` values at `ptr` (an
/// allocation of this process) with huge pages, for allocations of 8 MiB and more; elsewhere
/// than on Linux, nothing.
pub(super) fn advise_huge_pages(ptr: *mut f32, len: usize) {
    #[cfg(target_os = "linux")]
    advise_huge_pages_linux(ptr, len);
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

#[cfg(target_os = "linux")]
fn advise_huge_pages_linux(ptr: *mut f32, len: usize) {
    const HUGE: usize = 2 << 20;
    let bytes = len * std::mem::size_of::<f32>();
    if bytes < 4 * HUGE {
        return;
    }
    let start = ptr as usize;
    let first = start.next_multiple_of(HUGE);
    let end = (start + bytes) / HUGE * HUGE;
    if end > first {
        // SAFETY: `[first, end)` lies inside the allocation at `ptr`, which this process owns;
        // MADV_HUGEPAGE only changes how the kernel backs those pages, never their contents.
        // A failure (THP disabled, old kernel) leaves the ordinary pages: nothing to handle.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
}

/// Values per task below which a row-wise pass (bias, activation, norm) is not split over
/// rayon's threads: waking a sleeping worker costs more than such a pass on a few token rows.
const ROW_TASK_VALUES: usize = 16 * 1024;

/// The least number of `width`-long rows a parallel row-wise pass should give each task
/// (rayon's `with_min_len`): a few rows run on the calling thread alone.
///
/// ```
/// use rayon::prelude::*;
/// use segany_core::nn::min_rows_per_task;
/// // 7 token rows of 256 values: one task, on the calling thread.
/// let mut rows = vec![1f32; 7 * 256];
/// rows.par_chunks_mut(256)
///     .with_min_len(min_rows_per_task(256))
///     .for_each(|row| row.iter_mut().for_each(|v| *v *= 2.0));
/// assert_eq!(min_rows_per_task(256), 64);
/// assert!(rows.iter().all(|&v| v == 2.0));
/// ```
pub fn min_rows_per_task(width: usize) -> usize {
    (ROW_TASK_VALUES / width.max(1)).max(1)
}

/// The first `len` values of `v`, which grows with default values when shorter: memory kept
/// from call to call by callers that overwrite every value (stale values otherwise).
///
/// ```
/// let mut kept = vec![7u8; 2];
/// assert_eq!(segany_core::nn::grown(&mut kept, 3), [7, 7, 0]);
/// assert_eq!(segany_core::nn::grown(&mut kept, 1), [7]);
/// ```
pub fn grown<T: Clone + Default>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    if v.len() < len {
        v.resize(len, T::default());
    }
    &mut v[..len]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zeroed and of the asked length on both sides of the huge-page threshold (the advice
    /// covers whole 2 MiB pages inside the buffer only, and must not touch the values).
    #[test]
    fn zeroed_of_the_asked_length() {
        for len in [0, 5, (8 << 20) / 4 + 3] {
            let v = zeroed_output(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0.0));
        }
    }
}
