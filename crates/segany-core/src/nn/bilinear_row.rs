//! The horizontal pass of the bilinear resize: one source row → one row of the output's width,
//! `o[j] = r[x0[j]]·w0[j] + r[x1[j]]·w1[j]`.
//!
//! When upsampling, eight neighbouring outputs read fewer than eight neighbouring source
//! values. Where the CPU has AVX2, such a group of eight loads those source values once and
//! picks each output's two taps with a lane permutation, instead of eight pairs of scalar
//! loads. The products and the sum are rounded as in the scalar formula (no fused
//! multiply-add), so both paths give the same bits.

/// Source indices and weights of one output position: `(x0, x1, w0, w1)`.
pub(super) type Tap = (usize, usize, f32, f32);

/// Eight consecutive outputs whose taps lie in the eight source values from `base`.
#[derive(Debug, Clone, Copy)]
struct Group {
    /// First output of the group.
    start: usize,
    base: usize,
    i0: [i32; 8],
    i1: [i32; 8],
    w0: [f32; 8],
    w1: [f32; 8],
}

/// The taps of every output position for source rows of `w` values, and those groups of
/// eight that one vector load serves.
pub(super) struct RowTaps {
    taps: Vec<Tap>,
    groups: Vec<Group>,
    w: usize,
}

impl RowTaps {
    /// `taps` for a source row of `w` values.
    pub(super) fn new(taps: Vec<Tap>, w: usize) -> Self {
        let groups = taps
            .chunks_exact(8)
            .enumerate()
            .filter_map(|(g, t)| {
                // Near the row's end the eight values are the row's last eight.
                let base = t.iter().map(|t| t.0.min(t.1)).min()?.min(w.checked_sub(8)?);
                let top = t.iter().map(|t| t.0.max(t.1)).max()?;
                if top - base >= 8 {
                    return None;
                }
                let mut grp = Group {
                    start: 8 * g,
                    base,
                    i0: [0; 8],
                    i1: [0; 8],
                    w0: [0.0; 8],
                    w1: [0.0; 8],
                };
                for (k, &(x0, x1, w0, w1)) in t.iter().enumerate() {
                    grp.i0[k] = (x0 - base) as i32;
                    grp.i1[k] = (x1 - base) as i32;
                    grp.w0[k] = w0;
                    grp.w1[k] = w1;
                }
                Some(grp)
            })
            .collect();
        Self { taps, groups, w }
    }

    /// Outputs in a row.
    pub(super) fn len(&self) -> usize {
        self.taps.len()
    }

    /// The first `n` outputs' taps (a crop of the resize's left part).
    pub(super) fn truncate(&mut self, n: usize) {
        self.taps.truncate(n);
        self.groups.retain(|g| g.start + 8 <= n);
    }

    /// Source row `r` → `out` (`len()` values).
    pub(super) fn apply(&self, r: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if !self.groups.is_empty()
            && r.len() == self.w
            && out.len() == self.taps.len()
            && std::arch::is_x86_feature_detected!("avx2")
        {
            // SAFETY: AVX2 is present (checked above). Every group's eight source values lie
            // in a row of `w` values (`new` keeps `base + 8 <= w`), and its eight outputs in
            // `out` (`truncate` drops groups past the kept outputs).
            unsafe { self.apply_avx2(r, out) };
            return;
        }
        scalar(&self.taps, r, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn apply_avx2(&self, r: &[f32], out: &mut [f32]) {
        use std::arch::x86_64::*;
        let mut done = 0;
        for g in &self.groups {
            scalar(&self.taps[done..g.start], r, &mut out[done..g.start]);
            // SAFETY: `g.base + 8 <= r.len()` and `g.start + 8 <= out.len()` (see `apply`);
            // the index and weight arrays are eight lanes each.
            unsafe {
                let v = _mm256_loadu_ps(r.as_ptr().add(g.base));
                let i0 = _mm256_loadu_si256(g.i0.as_ptr().cast());
                let i1 = _mm256_loadu_si256(g.i1.as_ptr().cast());
                let a = _mm256_mul_ps(
                    _mm256_permutevar8x32_ps(v, i0),
                    _mm256_loadu_ps(g.w0.as_ptr()),
                );
                let b = _mm256_mul_ps(
                    _mm256_permutevar8x32_ps(v, i1),
                    _mm256_loadu_ps(g.w1.as_ptr()),
                );
                _mm256_storeu_ps(out.as_mut_ptr().add(g.start), _mm256_add_ps(a, b));
            }
            done = g.start + 8;
        }
        scalar(&self.taps[done..], r, &mut out[done..]);
    }
}

fn scalar(taps: &[Tap], r: &[f32], out: &mut [f32]) {
    for (o, &(x0, x1, w0, w1)) in out.iter_mut().zip(taps) {
        *o = r[x0] * w0 + r[x1] * w1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit for bit the scalar formula, for up- and downsampling, crops, and rows whose last
    /// group would read past the row's end.
    #[test]
    fn groups_equal_the_scalar_formula() {
        for (w, ow) in [
            (256, 1024),
            (7, 29),
            (9, 16),
            (16, 17),
            (24, 12),
            (3, 40),
            (10, 10),
        ] {
            let r: Vec<f32> = (0..w).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
            let taps = super::super::interpolate::axis(w, ow);
            for keep in [ow, ow - ow / 3, 5.min(ow)] {
                let mut t = RowTaps::new(taps.clone(), w);
                t.truncate(keep);
                let mut got = vec![f32::NAN; keep];
                t.apply(&r, &mut got);
                let mut want = vec![0f32; keep];
                scalar(&taps[..keep], &r, &mut want);
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{w} → {ow}, first {keep}"
                );
            }
            if w == 256 {
                // SAM's 4× upsampling: every group of eight outputs takes the vector path.
                assert_eq!(RowTaps::new(taps, w).groups.len(), ow / 8, "groups used");
            }
        }
    }
}
