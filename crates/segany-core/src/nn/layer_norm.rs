//! Layer normalisation computed as PyTorch does: mean first, then the variance of the
//! centred values (two passes), so activations with a large mean keep their precision.

use super::channel_norm::layer_norm_channels;
use super::is_cpu_f32;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Module, Result, Shape, Tensor, D};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::output::min_rows_per_task;
use super::reduce::lane_sum;
use super::simd::avx2_dispatch;
use super::values::with_f32_values;
use super::Scratch;

/// LayerNorm over the last dimension with weight and bias (`nn.LayerNorm`).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Builds the layer from existing tensors.
    pub fn new(weight: Tensor, bias: Tensor, eps: f64) -> Self {
        Self { weight, bias, eps }
    }

    /// The scale (`weight`).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The shift (`bias`).
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// The epsilon added to the variance.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// Normalises the rows of `x` (row-major, `dim` values each) into `out` on the CPU, rows
    /// in parallel: the values [`Module::forward`] gives an f32 CPU tensor, into a caller's
    /// buffer (see [`super::Linear::forward_into`]). Fails unless the weight and bias are
    /// f32 CPU tensors and `x` and `out` hold the same whole number of rows.
    ///
    /// ```
    /// use candle_core::{Device, Module, Tensor};
    /// use segany_core::nn::LayerNorm;
    /// let dev = Device::Cpu;
    /// let (w, b) = (Tensor::new(&[1f32, 2.0], &dev)?, Tensor::new(&[0f32, 1.0], &dev)?);
    /// let norm = LayerNorm::new(w, b, 1e-6);
    /// let x = [1f32, 3.0, -4.0, 4.0];
    /// let mut out = [0f32; 4];
    /// norm.forward_into(&x, &mut out)?;
    /// let expected = norm.forward(&Tensor::new(&x[..], &dev)?.reshape((2, 2))?)?;
    /// assert_eq!(out.to_vec(), expected.flatten_all()?.to_vec1::<f32>()?);
    /// assert!((out[0] + 1.0).abs() < 1e-5 && (out[1] - 3.0).abs() < 1e-5);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn forward_into(&self, x: &[f32], out: &mut [f32]) -> Result<()> {
        if !is_cpu_f32(&self.weight) || !is_cpu_f32(&self.bias) {
            candle_core::bail!(
                "layer-norm: forward_into needs f32 CPU parameters, found weight {:?} on {:?} \
                 and bias {:?} on {:?}",
                self.weight.dtype(),
                self.weight.device().location(),
                self.bias.dtype(),
                self.bias.device().location()
            )
        }
        let dim = self.weight.elem_count();
        if dim == 0 || !x.len().is_multiple_of(dim) || out.len() != x.len() {
            candle_core::bail!(
                "layer-norm: {} input and {} output values are not the same whole rows of {dim}",
                x.len(),
                out.len()
            )
        }
        with_f32_values(&self.weight, |w| {
            with_f32_values(&self.bias, |b| {
                out.par_chunks_mut(dim)
                    .zip(x.par_chunks(dim))
                    .with_min_len(min_rows_per_task(dim))
                    .for_each(|(d, s)| layer_norm_row(s, d, w, b, self.eps));
                Ok::<(), candle_core::Error>(())
            })
        })
    }
}

/// Loads `weight` and `bias` of size `dim` from `vb`.
pub fn layer_norm(dim: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    Ok(LayerNorm::new(
        vb.get(dim, "weight")?,
        vb.get(dim, "bias")?,
        eps,
    ))
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let dtype = xs.dtype();
        if xs.device().is_cpu() && dtype != DType::F64 {
            let xs = xs.contiguous()?;
            return xs.apply_op3_no_bwd(
                &self.weight,
                &self.bias,
                &TwoPassLayerNorm { eps: self.eps },
            );
        }
        #[cfg(feature = "cuda")]
        if super::cuda::supported(xs) {
            return super::cuda::layer_norm(xs, &self.weight, &self.bias, self.eps);
        }
        // The composition, in f32 for half-precision inputs and in f64 for f64 ones.
        let xs = xs.to_dtype(if dtype == DType::F64 {
            DType::F64
        } else {
            DType::F32
        })?;
        let mean = xs.mean_keepdim(D::Minus1)?;
        let centred = xs.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed
            .to_dtype(dtype)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// LayerNorm over the channel dimension of an NCHW tensor (SAM's `LayerNorm2d`).
#[derive(Debug, Clone)]
pub struct LayerNorm2d(LayerNorm);

/// Loads a [`LayerNorm2d`] of `channels` channels from `vb`.
pub fn layer_norm_2d(channels: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm2d> {
    Ok(LayerNorm2d(layer_norm(channels, eps, vb)?))
}

impl LayerNorm2d {
    /// The norm over the last dimension it applies to each pixel's channels (for
    /// channels-last tokens).
    pub fn as_layer_norm(&self) -> &LayerNorm {
        &self.0
    }
}

impl Module for LayerNorm2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let n = &self.0;
        let cpu_f32 = is_cpu_f32(xs) && is_cpu_f32(&n.weight) && is_cpu_f32(&n.bias);
        if xs.rank() == 4 && xs.elem_count() > 0 && cpu_f32 {
            // Normalised where the channels lie ([`layer_norm_channels`]).
            let (_, c, h, w) = xs.dims4()?;
            if c != n.weight.elem_count() || c != n.bias.elem_count() {
                candle_core::bail!(
                    "layer-norm 2d: {c} channels for {} weights and {} shifts",
                    n.weight.elem_count(),
                    n.bias.elem_count()
                )
            }
            let mut out = vec![0f32; xs.elem_count()];
            with_f32_values(xs, |x| {
                with_f32_values(&n.weight, |wt| {
                    with_f32_values(&n.bias, |bs| {
                        layer_norm_channels(x, &mut out, h * w, wt, bs, n.eps);
                        Ok::<(), candle_core::Error>(())
                    })
                })
            })?;
            return Tensor::from_vec(out, xs.dims(), xs.device());
        }
        // NCHW -> NHWC, normalise the contiguous channel vectors, back to NCHW.
        xs.permute((0, 2, 3, 1))?
            .apply(&self.0)?
            .permute((0, 3, 1, 2))?
            .contiguous()
    }
}

struct TwoPassLayerNorm {
    eps: f64,
}

fn contiguous<'a, T>(s: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => candle_core::bail!("layer-norm: operand must be contiguous"),
    }
}

/// Normalises one f32 row `src` into `dst` as [`LayerNorm`] does on the CPU (mean first, then
/// the mean square of the centred values, as PyTorch), then scales by `w` and shifts by `b`.
/// For kernels that normalise rows of their own buffers; all four slices have the same length.
///
/// The sums run in 16 f32 lanes (vectorisable; PyTorch's CPU reductions also accumulate f32
/// in lanes), not the f64 accumulators of the generic path.
pub fn layer_norm_row(src: &[f32], dst: &mut [f32], w: &[f32], b: &[f32], eps: f64) {
    layer_norm_row_stats(src, dst, w, b, eps);
}

/// [`layer_norm_row`], returning the row's mean and `1 / sqrt(var + eps)` it normalised with
/// (kernels that carry the norm's affine map forward algebraically need them).
pub fn layer_norm_row_stats(
    src: &[f32],
    dst: &mut [f32],
    w: &[f32],
    b: &[f32],
    eps: f64,
) -> (f32, f32) {
    layer_norm_row_stats_inline(src, dst, w, b, eps)
}

avx2_dispatch! {
    /// A residual and layer norm over rows of width `w.len()`: per row `y = x + (u + bias)`
    /// for an update `u`, then `out ← (y − mean)·inv·w + b` when `out` is not empty, with the
    /// row's mean and `inv = 1/sqrt(var + eps)` stored in `mean` and `inv` when those are not
    /// empty. The same arithmetic as [`layer_norm_row_stats`] (and [`layer_norm_stats`]) on
    /// `y`, in a build for the CPU's vector width: for kernels that hold an attention update
    /// in a scratch tile (the mask decoder's image tokens).
    #[allow(clippy::too_many_arguments)]
    pub fn residual_layer_norm_rows(
        u: &[f32],
        x: &[f32],
        bias: &[f32],
        w: &[f32],
        b: &[f32],
        eps: f64,
        out: &mut [f32],
        mean: &mut [f32],
        inv: &mut [f32],
    ) => residual_norm_loop
}

avx2_dispatch! {
    /// Rows of width `w.len()` normalised in place after a bias: per row `y = x + bias`, then
    /// `(y − mean)·inv·w + b`, the arithmetic of [`layer_norm_row_stats`] on `y`. All rows'
    /// statistics are taken in one pass and applied in a second: one row at a time, each row
    /// waits on its sums' latency (the mean before the variance before the scale), while
    /// independent rows in a loop of their own overlap. Built for the CPU's vector width; for
    /// the mask decoder's upscaling (rows of 64 channels, 256 per band).
    pub fn bias_layer_norm_rows_in_place(
        x: &mut [f32],
        bias: &[f32],
        w: &[f32],
        b: &[f32],
        eps: f64,
    ) => bias_norm_loop
}

#[inline(always)]
fn bias_norm_loop(x: &mut [f32], bias: &[f32], w: &[f32], b: &[f32], eps: f64) {
    let d = w.len();
    if d == 0 {
        return;
    }
    let mut stats = Scratch::take(2 * (x.len() / d));
    for (row, s) in x.chunks_exact_mut(d).zip(stats.chunks_exact_mut(2)) {
        for (v, c) in row.iter_mut().zip(bias) {
            *v += c;
        }
        (s[0], s[1]) = layer_norm_stats_inline(row, eps);
    }
    for (row, s) in x.chunks_exact_mut(d).zip(stats.chunks_exact(2)) {
        for ((v, &w), &b) in row.iter_mut().zip(w).zip(b) {
            *v = (*v - s[0]) * s[1] * w + b;
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn residual_norm_loop(
    u: &[f32],
    x: &[f32],
    bias: &[f32],
    w: &[f32],
    b: &[f32],
    eps: f64,
    out: &mut [f32],
    mean: &mut [f32],
    inv: &mut [f32],
) {
    let d = w.len();
    if d == 0 {
        return;
    }
    let mut row = vec![0f32; d];
    let mut stats = mean.iter_mut().zip(inv.iter_mut());
    let mut outs = out.chunks_mut(d);
    for (ui, xi) in u.chunks(d).zip(x.chunks(d)) {
        for (((r, u), x), c) in row.iter_mut().zip(ui).zip(xi).zip(bias) {
            *r = x + (u + c);
        }
        let (m, i) = match outs.next() {
            Some(oi) => layer_norm_row_stats_inline(&row, oi, w, b, eps),
            None => layer_norm_stats_inline(&row, eps),
        };
        if let Some((ms, is)) = stats.next() {
            (*ms, *is) = (m, i);
        }
    }
}

#[inline(always)]
fn layer_norm_row_stats_inline(
    src: &[f32],
    dst: &mut [f32],
    w: &[f32],
    b: &[f32],
    eps: f64,
) -> (f32, f32) {
    let (mean, inv) = layer_norm_stats_inline(src, eps);
    for (((d, &s), &w), &b) in dst.iter_mut().zip(src).zip(w).zip(b) {
        *d = (s - mean) * inv * w + b;
    }
    (mean, inv)
}

#[inline(always)]
fn layer_norm_stats_inline(src: &[f32], eps: f64) -> (f32, f32) {
    let dim = src.len();
    let mean = lane_sum(src, |v| v) / dim as f32;
    let var = lane_sum(src, |v| (v - mean) * (v - mean)) / dim as f32;
    (mean, 1.0 / (var + eps as f32).sqrt())
}

/// The mean and `1 / sqrt(var + eps)` of one row, exactly as [`layer_norm_row_stats`] computes
/// them, without normalising anything.
pub fn layer_norm_stats(src: &[f32], eps: f64) -> (f32, f32) {
    layer_norm_stats_inline(src, eps)
}

fn normalise_one<T: Copy>(
    s: &[T],
    d: &mut [T],
    w: &[T],
    b: &[T],
    eps: f64,
    to: impl Fn(T) -> f32,
    from: impl Fn(f32) -> T,
) {
    let dim = w.len();
    let mut sum = 0f64;
    for &v in s {
        sum += to(v) as f64;
    }
    let mean = (sum / dim as f64) as f32;
    let mut sq = 0f64;
    for &v in s {
        let c = to(v) - mean;
        sq += (c * c) as f64;
    }
    let var = (sq / dim as f64) as f32;
    let inv = 1.0 / (var + eps as f32).sqrt();
    for i in 0..dim {
        d[i] = from((to(s[i]) - mean) * inv * to(w[i]) + to(b[i]));
    }
}

fn normalise_rows<T: Copy + Send + Sync>(
    src: &[T],
    w: &[T],
    b: &[T],
    eps: f64,
    to: impl Fn(T) -> f32 + Sync,
    from: impl Fn(f32) -> T + Sync,
) -> Vec<T> {
    let dim = w.len();
    let mut dst = Vec::with_capacity(src.len());
    // SAFETY-free initialisation: fill with the source, then overwrite.
    dst.extend_from_slice(src);
    dst.par_chunks_mut(dim)
        .zip(src.par_chunks(dim))
        .with_min_len(min_rows_per_task(dim))
        .for_each(|(d, s)| normalise_one(s, d, w, b, eps, &to, &from));
    dst
}

impl CustomOp3 for TwoPassLayerNorm {
    fn name(&self) -> &'static str {
        "two-pass-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dim = l1.dims().last().copied().unwrap_or(0);
        if l2.shape().elem_count() != dim || l3.shape().elem_count() != dim {
            candle_core::bail!(
                "layer-norm: weight {:?} / bias {:?} do not match input {:?}",
                l2.shape(),
                l3.shape(),
                l1.shape()
            )
        }
        let shape = l1.shape().clone();
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(b)) => {
                let (x, w, b) = (contiguous(x, l1)?, contiguous(w, l2)?, contiguous(b, l3)?);
                let mut out = vec![0f32; x.len()];
                out.par_chunks_mut(dim.max(1))
                    .zip(x.par_chunks(dim.max(1)))
                    .with_min_len(min_rows_per_task(dim))
                    .for_each(|(d, s)| layer_norm_row(s, d, w, b, self.eps));
                CpuStorage::F32(out)
            }
            (CpuStorage::F16(x), CpuStorage::F16(w), CpuStorage::F16(b)) => {
                let (x, w, b) = (contiguous(x, l1)?, contiguous(w, l2)?, contiguous(b, l3)?);
                CpuStorage::F16(normalise_rows(
                    x,
                    w,
                    b,
                    self.eps,
                    |v| v.to_f32(),
                    half::f16::from_f32,
                ))
            }
            (CpuStorage::BF16(x), CpuStorage::BF16(w), CpuStorage::BF16(b)) => {
                let (x, w, b) = (contiguous(x, l1)?, contiguous(w, l2)?, contiguous(b, l3)?);
                CpuStorage::BF16(normalise_rows(
                    x,
                    w,
                    b,
                    self.eps,
                    |v| v.to_f32(),
                    half::bf16::from_f32,
                ))
            }
            _ => candle_core::bail!("layer-norm: unsupported or mixed dtypes"),
        };
        Ok((out, shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The two-pass norm in place after a bias: the same values (to the bit) as
    /// `layer_norm_row_stats` on `x + bias`, row by row, for rows of 64 (the upscaling's) and
    /// of an odd width.
    #[test]
    fn bias_rows_in_place_match_row_norm() {
        for (rows, d) in [(9usize, 64usize), (5, 37)] {
            let f = |k: usize, i: usize| ((i * k % 29) as f32 - 14.0) * 0.07 + k as f32 * 0.5;
            let x: Vec<f32> = (0..rows * d).map(|i| f(7, i)).collect();
            let bias: Vec<f32> = (0..d).map(|i| f(3, i)).collect();
            let w: Vec<f32> = (0..d).map(|i| 1.0 + f(5, i)).collect();
            let b: Vec<f32> = (0..d).map(|i| f(11, i)).collect();
            let mut want = vec![0f32; rows * d];
            for (xr, o) in x.chunks(d).zip(want.chunks_mut(d)) {
                let y: Vec<f32> = xr.iter().zip(&bias).map(|(v, c)| v + c).collect();
                layer_norm_row_stats(&y, o, &w, &b, 1e-5);
            }
            let mut got = x.clone();
            bias_layer_norm_rows_in_place(&mut got, &bias, &w, &b, 1e-5);
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{rows} rows of {d}"
            );
        }
    }

    /// The fused residual and norm over rows: the same values (to the bit) as
    /// `layer_norm_row_stats` on `x + (u + bias)`, writing or only recording the statistics,
    /// and nothing recorded when no slices are given.
    #[test]
    fn residual_rows_match_row_norm() {
        let (rows, d) = (5usize, 37usize);
        let f = |k: usize, i: usize| ((i * k % 29) as f32 - 14.0) * 0.07 + k as f32 * 0.5;
        let x: Vec<f32> = (0..rows * d).map(|i| f(7, i)).collect();
        let o0: Vec<f32> = (0..rows * d).map(|i| f(11, i)).collect();
        let bias: Vec<f32> = (0..d).map(|i| f(3, i)).collect();
        let w: Vec<f32> = (0..d).map(|i| 0.5 + f(5, i) * 0.1).collect();
        let b: Vec<f32> = (0..d).map(|i| f(13, i) * 0.2).collect();
        let mut want = vec![0f32; rows * d];
        let mut want_stats = Vec::new();
        for r in 0..rows {
            let y: Vec<f32> = (0..d)
                .map(|j| x[r * d + j] + (o0[r * d + j] + bias[j]))
                .collect();
            want_stats.push(layer_norm_row_stats(
                &y,
                &mut want[r * d..(r + 1) * d],
                &w,
                &b,
                1e-5,
            ));
        }
        for write in [true, false] {
            let mut out = if write {
                vec![f32::NAN; rows * d]
            } else {
                Vec::new()
            };
            let (mut mean, mut inv) = (vec![f32::NAN; rows], vec![f32::NAN; rows]);
            residual_layer_norm_rows(&o0, &x, &bias, &w, &b, 1e-5, &mut out, &mut mean, &mut inv);
            if write {
                assert_eq!(out, want);
            }
            let got: Vec<(f32, f32)> = mean.into_iter().zip(inv).collect();
            assert_eq!(got, want_stats, "write {write}");
        }
        let mut out = vec![f32::NAN; rows * d];
        residual_layer_norm_rows(&o0, &x, &bias, &w, &b, 1e-5, &mut out, &mut [], &mut []);
        assert_eq!(out, want);
    }

    /// `forward_into` writes what `forward` returns, row for row, over a NaN-filled buffer
    /// (rows split over the threads); wrong lengths and f64 parameters are errors that say
    /// what was found.
    #[test]
    fn forward_into_equals_forward() -> Result<()> {
        let dev = Device::Cpu;
        let (rows, d) = (300usize, 48usize);
        let f = |k: usize, i: usize| ((i * k % 31) as f32 - 15.0) * 0.05 + (i % 7) as f32;
        let x: Vec<f32> = (0..rows * d).map(|i| f(7, i)).collect();
        let w = Tensor::from_vec((0..d).map(|i| 0.5 + f(5, i) * 0.1).collect(), d, &dev)?;
        let b = Tensor::from_vec((0..d).map(|i| f(3, i) * 0.2).collect(), d, &dev)?;
        let norm = LayerNorm::new(w.clone(), b.clone(), 1e-5);
        let mut out = vec![f32::NAN; rows * d];
        norm.forward_into(&x, &mut out)?;
        let want: Vec<f32> = norm
            .forward(&Tensor::from_vec(x.clone(), (rows, d), &dev)?)?
            .flatten_all()?
            .to_vec1()?;
        assert_eq!(out, want);
        let err = norm
            .forward_into(&x[..d + 1], &mut out[..d + 1])
            .unwrap_err();
        assert!(err.to_string().contains("whole rows of 48"), "{err}");
        let err = norm.forward_into(&x, &mut out[..d]).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("{} input and 48 output", rows * d)),
            "{err}"
        );
        let f64_norm = LayerNorm::new(w.to_dtype(DType::F64)?, b, 1e-5);
        let err = f64_norm.forward_into(&x, &mut out).unwrap_err().to_string();
        assert!(
            err.contains("weight F64 on Cpu") && err.contains("bias F32 on Cpu"),
            "{err}"
        );
        Ok(())
    }

    /// `LayerNorm2d` on the CPU in f32 (normalised in place over the channels) against the
    /// permuting composition in f64, and refusing weights of the wrong width.
    #[test]
    fn layer_norm_2d_matches_composition() -> Result<()> {
        let dev = Device::Cpu;
        let c = 6;
        let x = Tensor::randn(0f32, 1.0, (2, c, 5, 7), &dev)?.affine(2.0, 3.0)?;
        let w = Tensor::randn(0f32, 1.0, c, &dev)?;
        let b = Tensor::randn(0f32, 1.0, c, &dev)?;
        let ours = LayerNorm2d(LayerNorm::new(w.clone(), b.clone(), 1e-6)).forward(&x)?;
        let f64_norm = LayerNorm2d(LayerNorm::new(
            w.to_dtype(DType::F64)?,
            b.to_dtype(DType::F64)?,
            1e-6,
        ));
        let want = f64_norm.forward(&x.to_dtype(DType::F64)?)?;
        let d: f64 = (ours.to_dtype(DType::F64)? - want)?
            .abs()?
            .max_all()?
            .to_scalar()?;
        assert!(d < 1e-5, "max |Δ| {d}");
        let narrow = LayerNorm2d(LayerNorm::new(w.narrow(0, 0, 5)?, b, 1e-6));
        let err = narrow.forward(&x).unwrap_err().to_string();
        assert!(err.contains("6 channels for 5 weights"), "{err}");
        Ok(())
    }

    #[test]
    fn matches_definition_with_large_mean() -> Result<()> {
        // Values around 1000 with unit spread: a one-pass E[x²]-E[x]² loses all precision here.
        let dev = Device::Cpu;
        let base: Vec<f32> = (0..64)
            .map(|i| 1000.0 + ((i * 37 % 11) as f32 - 5.0) * 0.1)
            .collect();
        let x = Tensor::from_vec(base.clone(), (1, 64), &dev)?;
        let w = Tensor::ones(64, DType::F32, &dev)?;
        let b = Tensor::zeros(64, DType::F32, &dev)?;
        let y: Vec<f32> = LayerNorm::new(w, b, 1e-6)
            .forward(&x)?
            .flatten_all()?
            .to_vec1()?;
        let mean = base.iter().map(|&v| v as f64).sum::<f64>() / 64.0;
        let var = base.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 64.0;
        for (yi, xi) in y.iter().zip(&base) {
            let expect = (*xi as f64 - mean) / (var + 1e-6).sqrt();
            assert!((*yi as f64 - expect).abs() < 2e-3, "{yi} vs {expect}");
        }
        // f64 inputs are normalised in f64 (the composition), to f64 precision.
        let x64 = x.to_dtype(DType::F64)?;
        let y64: Vec<f64> = LayerNorm::new(
            Tensor::ones(64, DType::F64, &dev)?,
            Tensor::zeros(64, DType::F64, &dev)?,
            1e-6,
        )
        .forward(&x64)?
        .flatten_all()?
        .to_vec1()?;
        for (yi, xi) in y64.iter().zip(&base) {
            let expect = (*xi as f64 - mean) / (var + 1e-6).sqrt();
            assert!((yi - expect).abs() < 1e-9, "f64: {yi} vs {expect}");
        }
        Ok(())
    }
}
