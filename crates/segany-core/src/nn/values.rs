//! A tensor's values as an f32 slice, for kernels that work on plain slices.

use candle_core::{CpuStorage, DType, Storage, Tensor};

/// Runs `f` on the values of `t` in row-major order: read in place when `t` is a contiguous
/// f32 CPU tensor (no copy), otherwise from a contiguous f32 copy.
pub fn with_f32_values<R, E: From<candle_core::Error>>(
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> Result<R, E>,
) -> Result<R, E> {
    let t = t.contiguous()?;
    {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            return f(&v[a..b]);
        }
    }
    let copy: Vec<f32> = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
    f(&copy)
}

/// The planes (last two dimensions) of a tensor's values, each row-major: see
/// [`with_f32_planes`].
pub struct Planes<'a> {
    values: &'a [f32],
    offsets: Vec<usize>,
    len: usize,
}

impl Planes<'_> {
    /// Number of planes (the product of the leading dimensions).
    pub fn count(&self) -> usize {
        self.offsets.len()
    }

    /// Plane `i` (in row-major order of the leading dimensions), `None` past the last.
    pub fn get(&self, i: usize) -> Option<&[f32]> {
        let at = *self.offsets.get(i)?;
        self.values.get(at..at + self.len)
    }
}

/// Runs `f` on the planes of `t` (its last two dimensions, `t` of rank 2 or more): read in
/// place when `t` is an f32 CPU tensor whose planes are each contiguous, however the leading
/// dimensions are strided (a narrowed `(B, K, h, w)` view: no copy of the whole tensor),
/// otherwise from a contiguous f32 copy.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use segany_core::nn::with_f32_planes;
/// let t = Tensor::arange(0f32, 12., &Device::Cpu)?.reshape((1, 3, 2, 2))?;
/// let view = t.narrow(1, 1, 2)?; // planes 1 and 2, not contiguous as a whole
/// let second = with_f32_planes(&view, |p| Ok::<_, candle_core::Error>(p.get(1).map(<[f32]>::to_vec)))?;
/// assert_eq!(second, Some(vec![8., 9., 10., 11.]));
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn with_f32_planes<R, E: From<candle_core::Error>>(
    t: &Tensor,
    f: impl FnOnce(Planes<'_>) -> Result<R, E>,
) -> Result<R, E> {
    let dims = t.dims();
    let Some(split) = dims.len().checked_sub(2) else {
        return Err(candle_core::Error::Msg(format!(
            "planes of a tensor of shape {dims:?} (rank 2 or more needed)"
        ))
        .into());
    };
    let (lead, (h, w)) = (&dims[..split], (dims[split], dims[split + 1]));
    let count: usize = lead.iter().product();
    {
        let (storage, layout) = t.storage_and_layout();
        let stride = layout.stride();
        let planes_contiguous =
            (h <= 1 || stride[split] == w) && (w <= 1 || stride[split + 1] == 1);
        if let (Storage::Cpu(CpuStorage::F32(v)), true) = (&*storage, planes_contiguous) {
            let offsets = (0..count)
                .map(|i| {
                    let mut rest = i;
                    let mut at = layout.start_offset();
                    for (d, s) in lead.iter().zip(&stride[..split]).rev() {
                        at += rest % d * s;
                        rest /= d;
                    }
                    at
                })
                .collect();
            return f(Planes {
                values: v,
                offsets,
                len: h * w,
            });
        }
    }
    let copy: Vec<f32> = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
    f(Planes {
        values: &copy,
        offsets: (0..count).map(|i| i * h * w).collect(),
        len: h * w,
    })
}

/// Whether `t` is an f32 tensor on the CPU: the condition under which the plain-slice kernels
/// of this crate (and the models' fused CPU paths) take over from candle's operations.
pub fn is_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn reads_contiguous_views_and_copies() -> candle_core::Result<()> {
        let t = Tensor::arange(0f32, 6., &Device::Cpu)?.reshape((2, 3))?;
        let sum = |t: &Tensor| with_f32_values(t, |v| Ok::<_, candle_core::Error>(v.to_vec()));
        assert_eq!(sum(&t)?, vec![0., 1., 2., 3., 4., 5.]);
        // A transposed view and another dtype go through a row-major f32 copy.
        assert_eq!(sum(&t.t()?)?, vec![0., 3., 1., 4., 2., 5.]);
        assert_eq!(sum(&t.to_dtype(DType::F64)?)?, vec![0., 1., 2., 3., 4., 5.]);
        assert!(is_cpu_f32(&t) && !is_cpu_f32(&t.to_dtype(DType::F64)?));
        Ok(())
    }

    /// Every plane of narrowed and transposed views (read in place and copied) equals the
    /// plane of the contiguous copy; indices past the last give `None`.
    #[test]
    fn planes_of_strided_views() -> candle_core::Result<()> {
        let t = Tensor::arange(0f32, 120., &Device::Cpu)?.reshape((2, 5, 3, 4))?;
        for view in [
            t.clone(),
            t.narrow(1, 1, 3)?,
            t.narrow(0, 1, 1)?.narrow(1, 2, 2)?,
            t.transpose(0, 1)?,
            t.transpose(2, 3)?,
            t.narrow(3, 1, 2)?,
        ] {
            let want: Vec<Vec<f32>> = view
                .contiguous()?
                .flatten_all()?
                .to_vec1::<f32>()?
                .chunks(view.dim(2)? * view.dim(3)?)
                .map(<[f32]>::to_vec)
                .collect();
            let got = with_f32_planes(&view, |p| {
                assert!(p.get(p.count()).is_none());
                Ok::<_, candle_core::Error>(
                    (0..p.count())
                        .filter_map(|i| p.get(i))
                        .map(<[f32]>::to_vec)
                        .collect::<Vec<_>>(),
                )
            })?;
            assert_eq!(got, want, "{:?} strides {:?}", view.dims(), view.stride());
        }
        Ok(())
    }
}
