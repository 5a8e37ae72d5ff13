//! SSA's post-processing (`scripts/segformer.py`): logits upsampled to the image size with
//! `F.interpolate(mode="bilinear", align_corners=True)`, then `argmax` over classes.

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

/// Source indices and weights along one axis, as PyTorch's CPU upsampling kernel computes
/// them for `align_corners=True`: `scale = (in − 1) / (out − 1)` in f32, `src = scale · i`,
/// `i0 = ⌊src⌋`, `λ = src − i0`.
fn axis(input: usize, output: usize) -> Vec<(usize, usize, f32, f32)> {
    if input == output {
        return (0..output).map(|i| (i, i, 1.0, 0.0)).collect();
    }
    let scale = if output > 1 {
        (input - 1) as f32 / (output - 1) as f32
    } else {
        0.0
    };
    (0..output)
        .map(|o| {
            let real = scale * o as f32;
            let i0 = (real.floor() as usize).min(input - 1);
            let lambda = (real - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 + 1 < input { i0 + 1 } else { i0 };
            (i0, i1, 1.0 - lambda, lambda)
        })
        .collect()
}

/// The class of every pixel of an `out_h × out_w` image from logits `(1, C, h, w)`: bilinear
/// upsampling with `align_corners=True` (values computed as PyTorch's f32 kernel,
/// `(x00·w0 + x01·w1)·h0 + (x10·w0 + x11·w1)·h1`) and the first maximal class, row-major.
/// The upsampled logits are never held in memory at once.
///
/// ```
/// use candle_core::{Device, Tensor};
/// // two classes on a 1×2 map: class 0 wins on the left, class 1 on the right.
/// let logits = Tensor::new(&[[[[1f32, 0.]], [[0f32, 1.]]]], &Device::Cpu).unwrap();
/// let map = segany_segformer::class_map(&logits, 1, 5).unwrap();
/// assert_eq!(map, vec![0, 0, 0, 1, 1]); // the middle pixel ties and takes the first class
/// ```
pub fn class_map(logits: &Tensor, out_h: usize, out_w: usize) -> Result<Vec<u32>> {
    let (b, c, h, w) = logits.dims4()?;
    if b != 1 || c == 0 || h == 0 || w == 0 {
        candle_core::bail!(
            "class_map: expected logits (1, C>0, h>0, w>0), got {:?}",
            logits.dims()
        );
    }
    let src = logits
        .to_dtype(DType::F32)?
        .to_device(&candle_core::Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let (ys, xs) = (axis(h, out_h), axis(w, out_w));
    let mut out = vec![0u32; out_h * out_w];
    out.par_chunks_mut(out_w.max(1))
        .zip(ys.par_iter())
        .for_each(|(row, &(y0, y1, h0, h1))| {
            let mut best = vec![f32::NEG_INFINITY; out_w];
            for k in 0..c {
                let plane = &src[k * h * w..(k + 1) * h * w];
                let (r0, r1) = (&plane[y0 * w..(y0 + 1) * w], &plane[y1 * w..(y1 + 1) * w]);
                for (x, &(x0, x1, w0, w1)) in xs.iter().enumerate() {
                    let v = (r0[x0] * w0 + r0[x1] * w1) * h0 + (r1[x0] * w0 + r1[x1] * w1) * h1;
                    // torch.argmax keeps the first maximum; NaN counts as maximal.
                    if v > best[x] || (v.is_nan() && !best[x].is_nan()) {
                        best[x] = v;
                        row[x] = k as u32;
                    }
                }
            }
        });
    Ok(out)
}
