//! A linear layer whose CPU f32 path adds the bias (and optionally applies exact GELU or
//! QuickGELU) in one parallel pass over the gemm output.
//!
//! `candle_nn::Linear` runs the matmul, then `broadcast_add` for the bias (a second pass with its
//! own allocation), and a following `gelu_erf` is a third. Here the bias and the activation are
//! applied row by row, in parallel, to the product's own buffer: `(x·Wᵀ) + b` as candle, then
//! the activation with the vectorisable `erf` / `exp` of [`super::gelu`] (within 1e-6 of
//! candle's scalar `erf_f32` / `exp`, tested). Other devices and dtypes use the composition.

use super::is_cpu_f32;
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::bf16_gemm::{bf16_supported, matmul_bf16_into, PackedBf16};
use super::few_rows::{few_rows_preferred, matmul_few_rows_into};
use super::gelu::{gelu_erf_in_place, quick_gelu_in_place};
use super::matmul::{matmul_into, matmul_new, MatRef};
use super::output::{min_rows_per_task, zeroed_output};
use super::values::with_f32_values;

/// `y = x·Wᵀ + b` over the last dimension (`nn.Linear`; `weight` is `(out, in)`).
#[derive(Debug, Clone)]
pub struct Linear {
    /// `(out, in)`; with `weight_t`, a transposed view of it.
    weight: Tensor,
    /// On the CPU in f32: the weight stored transposed, `(in, out)` contiguous, the layout
    /// the product `x·Wᵀ` reads without re-packing the weight on every call.
    weight_t: Option<Tensor>,
    bias: Option<Tensor>,
    /// With [`CpuMatmul::Bf16`]: the transposed weight rounded to bf16 and packed (whole, and
    /// per output range asked for).
    packed_bf16: Option<std::sync::Arc<PackedOutputs>>,
}

/// The arithmetic of a layer's product on the CPU in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuMatmul {
    /// Inputs and weights in f32 (the default; the reference's arithmetic).
    #[default]
    F32,
    /// Inputs and weights rounded to bf16, products and sums in f32, on CPUs with AVX-512 BF16
    /// (twice the f32 multiply-add rate; [`super::bf16_gemm`]). Each input and weight loses
    /// its mantissa beyond 8 bits (relative error ≤ 2⁻⁹); the bias, the activation and
    /// everything outside the product stay f32.
    Bf16,
}

/// Loads `weight (out, in)` and `bias (out)` from `vb`.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let lin = candle_nn::linear(in_dim, out_dim, vb)?;
    Ok(Linear::new(lin.weight().clone(), lin.bias().cloned()))
}

/// Loads `weight (out, in)` from `vb`, without bias.
pub fn linear_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let lin = candle_nn::linear_no_bias(in_dim, out_dim, vb)?;
    Ok(Linear::new(lin.weight().clone(), None))
}

/// The bf16 copies of a layer's weight: the whole of it first, then any output ranges
/// [`Linear::forward_outputs`] is called with.
#[derive(Debug)]
struct PackedOutputs(Vec<(std::ops::Range<usize>, PackedBf16)>);

impl PackedOutputs {
    fn get(&self, start: usize, len: usize) -> Option<&PackedBf16> {
        self.0
            .iter()
            .find(|(r, _)| r.start == start && r.len() == len)
            .map(|(_, p)| p)
    }
}

/// The activation applied in the bias pass of [`Linear::forward_into`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// None: `x·Wᵀ + b`.
    Identity,
    /// Exact GELU (`nn.GELU()`), as [`Linear::forward_gelu`].
    GeluErf,
    /// QuickGELU `y · sigmoid(1.702 y)`, as [`Linear::forward_quick_gelu`].
    QuickGelu,
    /// `max(y, 0)`, as [`Linear::forward_relu`].
    Relu,
}

use Activation as Act;

impl Linear {
    /// Builds the layer from `weight (out, in)` and an optional `bias (out)`. An f32 weight
    /// on the CPU is stored transposed (a copy; `weight` then returns a view of it), so later
    /// in-place changes to the given tensor (`Var::set`, `VarMap::load` after building a model
    /// on a `VarMap`) do not reach the layer: load or set weights before building.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        let transposed = || -> Result<Tensor> { weight.t()?.contiguous() };
        let cpu_f32 = is_cpu_f32(&weight);
        match (cpu_f32 && weight.rank() == 2).then(transposed) {
            Some(Ok(wt)) => match wt.t() {
                Ok(view) => Self {
                    weight: view,
                    weight_t: Some(wt),
                    bias,
                    packed_bf16: None,
                },
                Err(_) => Self::plain(weight, bias),
            },
            _ => Self::plain(weight, bias),
        }
    }

    fn plain(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight,
            weight_t: None,
            bias,
            packed_bf16: None,
        }
    }

    /// Chooses the product's arithmetic on the CPU in f32 ([`CpuMatmul`]). Returns whether the
    /// layer now multiplies in bf16: `false` for [`CpuMatmul::F32`], for a CPU without
    /// AVX-512 BF16, and for a weight that is not an f32 CPU tensor (other devices keep their
    /// own arithmetic).
    pub fn set_cpu_matmul(&mut self, mode: CpuMatmul) -> Result<bool> {
        self.set_cpu_matmul_with_outputs(mode, &[])
    }

    /// [`Linear::set_cpu_matmul`] for a layer also called through
    /// [`Linear::forward_outputs`]: each of `outputs` (ranges of output features, e.g. the
    /// query, key and value parts of a packed `in_proj`) gets its own bf16 copy of those
    /// weight columns, so those calls multiply in bf16 too. Other ranges stay in f32.
    pub fn set_cpu_matmul_with_outputs(
        &mut self,
        mode: CpuMatmul,
        outputs: &[std::ops::Range<usize>],
    ) -> Result<bool> {
        self.packed_bf16 = None;
        let wt = match (&self.weight_t, mode) {
            (Some(wt), CpuMatmul::Bf16) if bf16_supported() => wt,
            _ => return Ok(false),
        };
        let (k, n) = wt.dims2()?;
        let whole = std::iter::once(0..n);
        let ranges: Vec<_> = whole
            .chain(outputs.iter().filter(|r| **r != (0..n)).cloned())
            .collect();
        let packed = with_f32_values(wt, |w| {
            ranges
                .into_iter()
                .map(|r| {
                    if r.is_empty() || r.end > n {
                        candle_core::bail!("linear: outputs {r:?} of {n} cannot be packed")
                    }
                    Ok((r.clone(), PackedBf16::pack(&w[r.start..], k, r.len(), n)?))
                })
                .collect::<Result<Vec<_>>>()
        })?;
        self.packed_bf16 = Some(std::sync::Arc::new(PackedOutputs(packed)));
        Ok(true)
    }

    /// The `(out, in)` weight (a transposed view on the CPU in f32; see [`Linear::weight_t`]).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The weight as stored on the CPU in f32: `(in, out)` contiguous.
    pub fn weight_t(&self) -> Option<&Tensor> {
        self.weight_t.as_ref()
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// `gelu_erf(x·Wᵀ + b)`: the first half of a ViT MLP.
    pub fn forward_gelu(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, Act::GeluErf)
    }

    /// `residual + (x·Wᵀ + b)`: a projection followed by a residual connection, in the bias pass
    /// on the CPU (no separate pass and allocation for the sum; f32 addition commutes, so the
    /// values are the composition's). `residual` has the output's shape.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.run_with(x, Act::Identity, Some(residual))
    }

    /// `quick_gelu(x·Wᵀ + b)` with `quick_gelu(y) = y · sigmoid(1.702 y)`: the first half of
    /// an OpenAI CLIP MLP.
    pub fn forward_quick_gelu(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, Act::QuickGelu)
    }

    /// `max(x·Wᵀ + b, 0)`: the first half of a DETR feed-forward block.
    pub fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, Act::Relu)
    }

    /// Outputs `start..start + len` of the layer alone: `x·W[start..start + len]ᵀ + b[...]`
    /// (e.g. the query and key parts of a packed `in_proj` applied to `x + pos`), with the
    /// weight read in place on the CPU.
    pub fn forward_outputs(&self, x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        let out_dim = self.weight.dim(0)?;
        if start + len > out_dim {
            candle_core::bail!("linear: outputs {start}..{} of {out_dim}", start + len)
        }
        self.run_part(x, Act::Identity, None, start..start + len)
    }

    fn run(&self, x: &Tensor, act: Act) -> Result<Tensor> {
        self.run_with(x, act, None)
    }

    fn run_with(&self, x: &Tensor, act: Act, residual: Option<&Tensor>) -> Result<Tensor> {
        self.run_part(x, act, residual, 0..self.weight.dim(0)?)
    }

    fn run_part(
        &self,
        x: &Tensor,
        act: Act,
        residual: Option<&Tensor>,
        outputs: std::ops::Range<usize>,
    ) -> Result<Tensor> {
        let (start, len) = (outputs.start, outputs.len());
        let fast = is_cpu_f32(x)
            && self.bias.as_ref().is_none_or(|b| b.dtype() == DType::F32)
            && residual.is_none_or(is_cpu_f32);
        let wt = match &self.weight_t {
            Some(wt) if fast => wt,
            _ => {
                let bias = match &self.bias {
                    Some(b) => Some(b.narrow(0, start, len)?),
                    None => None,
                };
                // One product over all rows (candle's Linear multiplies a rank-4 input as a
                // batch of matrices against a broadcast weight), on a contiguous input (CUDA's
                // product rejects rows further apart than their length, as in `hs[:, 0]`).
                let x = x.contiguous()?;
                let in_dim = x.dim(candle_core::D::Minus1)?;
                let mut out_dims = x.dims().to_vec();
                if let Some(last) = out_dims.last_mut() {
                    *last = len;
                }
                let rows = x.elem_count() / in_dim.max(1);
                let w = self.weight.narrow(0, start, len)?;
                let y = x.reshape((rows, in_dim))?.matmul(&w.t()?)?;
                #[cfg(feature = "cuda")]
                if super::cuda::supported(&y) {
                    use super::cuda::{bias_act, Activation as CudaAct};
                    let act = match act {
                        Act::Identity => Some(CudaAct::Identity),
                        Act::GeluErf => Some(CudaAct::GeluErf),
                        Act::Relu => Some(CudaAct::Relu),
                        Act::QuickGelu => None,
                    };
                    if let Some(act) = act {
                        let res = match residual {
                            Some(r) => Some(r.reshape((rows, len))?),
                            None => None,
                        };
                        return bias_act(&y, bias.as_ref(), res.as_ref(), act)?.reshape(out_dims);
                    }
                }
                let y = match bias {
                    Some(b) => y.broadcast_add(&b)?,
                    None => y,
                };
                let y = y.reshape(out_dims)?;
                let y = match act {
                    Act::Identity => y,
                    Act::GeluErf => y.gelu_erf()?,
                    Act::QuickGelu => (&y * candle_nn::ops::sigmoid(&(&y * 1.702f64)?)?)?,
                    Act::Relu => y.relu()?,
                };
                return match residual {
                    Some(r) => r + y,
                    None => Ok(y),
                };
            }
        };
        let (_, in_dim) = self.weight.dims2()?;
        let x = x.contiguous()?;
        let dims = x.dims();
        if dims.last() != Some(&in_dim) {
            candle_core::bail!("linear: input {dims:?} does not end in {in_dim} features")
        }
        let rows = x.elem_count() / in_dim.max(1);
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = len;
        }
        if let Some(r) = residual.filter(|r| r.dims() != out_dims.as_slice()) {
            candle_core::bail!(
                "linear: residual {:?} does not match the output {out_dims:?}",
                r.dims()
            )
        }
        let out = with_f32_values(&x, |xv| {
            let mut out = self.product_new(wt, (xv, rows), outputs.clone())?;
            match residual {
                Some(r) => with_f32_values(r, |res| {
                    self.epilogue(act, Some(res), &mut out, outputs.clone())
                })?,
                None => self.epilogue(act, None, &mut out, outputs.clone())?,
            }
            Ok::<_, candle_core::Error>(out)
        })?;
        Tensor::from_vec(out, out_dims, x.device())
    }

    /// `act(x·Wᵀ + b) (+ residual)` of `rows` rows into a caller's buffer, on the CPU in f32:
    /// `x` is `rows × in`, `out` and `residual` are `rows × out`, all row-major. The
    /// arithmetic of the tensor methods ([`Module::forward`], [`Linear::forward_gelu`],
    /// [`Linear::forward_add`], …), for a model that runs its layers through a few buffers
    /// it reuses: a fresh output of tens of megabytes per layer costs page faults and the
    /// kernel's zeroing of every page (≈ 5% of SAM ViT-B's encoder). Fails for a layer that
    /// is not an f32 CPU layer, and for slices of other lengths.
    ///
    /// ```
    /// use candle_core::{Device, Module, Tensor};
    /// use segany_core::nn::{Activation, Linear};
    /// let w = Tensor::new(&[[1f32, 2.0], [3.0, 4.0], [5.0, 6.0]], &Device::Cpu)?; // (out 3, in 2)
    /// let b = Tensor::new(&[0.5f32, -0.5, 0.0], &Device::Cpu)?;
    /// let layer = Linear::new(w, Some(b));
    /// let x = [1f32, 1.0, 0.0, 1.0]; // 2 rows
    /// let residual = [10f32; 6];
    /// let mut out = [0f32; 6];
    /// layer.forward_into(&x, 2, Activation::Identity, Some(&residual), &mut out)?;
    /// assert_eq!(out, [13.5, 16.5, 21.0, 12.5, 13.5, 16.0]);
    /// let expected = layer.forward(&Tensor::new(&x[..], &Device::Cpu)?.reshape((2, 2))?)?;
    /// assert_eq!(expected.flatten_all()?.to_vec1::<f32>()?, [3.5, 6.5, 11.0, 2.5, 3.5, 6.0]);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    pub fn forward_into(
        &self,
        x: &[f32],
        rows: usize,
        act: Activation,
        residual: Option<&[f32]>,
        out: &mut [f32],
    ) -> Result<()> {
        let Some(wt) = &self.weight_t else {
            candle_core::bail!(
                "linear: forward_into needs an f32 CPU layer, found {:?} on {:?}",
                self.weight.dtype(),
                self.weight.device().location()
            )
        };
        if self.bias.as_ref().is_some_and(|b| b.dtype() != DType::F32) {
            candle_core::bail!("linear: forward_into needs an f32 bias")
        }
        let out_dim = self.weight.dim(0)?;
        self.cpu_into(wt, (x, rows), act, residual, out, 0..out_dim)
    }

    /// The CPU f32 body: the product of `x` (`rows × in`) with the weight columns
    /// `outputs`, the bias, `act` and `residual`, into `out` (`rows × outputs.len()`).
    fn cpu_into(
        &self,
        wt: &Tensor,
        (xv, rows): (&[f32], usize),
        act: Act,
        residual: Option<&[f32]>,
        out: &mut [f32],
        outputs: std::ops::Range<usize>,
    ) -> Result<()> {
        if residual.is_some_and(|r| r.len() != out.len()) {
            candle_core::bail!(
                "linear: {} residual values for {} outputs",
                residual.map_or(0, <[f32]>::len),
                out.len()
            )
        }
        self.product_into(wt, (xv, rows), out, outputs.clone())?;
        self.epilogue(act, residual, out, outputs)
    }

    /// Checks `x` (`rows × in`) against the weight; the weight's dimensions `(out, in)`.
    fn check_input(&self, xv: &[f32], rows: usize) -> Result<(usize, usize)> {
        let (full_dim, in_dim) = self.weight.dims2()?;
        if xv.len() != rows * in_dim {
            candle_core::bail!(
                "linear: {rows} rows need {} input values, found {}",
                rows * in_dim,
                xv.len()
            )
        }
        Ok((full_dim, in_dim))
    }

    /// `x·Wᵀ` for the weight columns `outputs` as a new vector: written by the f32 gemm alone
    /// ([`matmul_new`]); the bf16 and few-row products write into zeroed memory
    /// ([`Self::product_into`]).
    fn product_new(
        &self,
        wt: &Tensor,
        (xv, rows): (&[f32], usize),
        outputs: std::ops::Range<usize>,
    ) -> Result<Vec<f32>> {
        let (full_dim, in_dim) = self.check_input(xv, rows)?;
        let (start, len) = (outputs.start, outputs.len());
        let bf16 = self
            .packed_bf16
            .as_ref()
            .is_some_and(|p| p.get(start, len).is_some());
        if bf16 || few_rows_preferred(rows) {
            let mut out = zeroed_output(rows * len);
            self.product_into(wt, (xv, rows), &mut out, outputs)?;
            return Ok(out);
        }
        with_f32_values(wt, |wv| {
            let wv = wv.get(start..).unwrap_or_default();
            let a = MatRef::row_major(xv, rows, in_dim)?;
            let w = MatRef::new(wv, in_dim, len, full_dim, 1)?;
            matmul_new(a, w, 1.0, true)
        })
    }

    /// `x·Wᵀ` for the weight columns `outputs` into `out` (`rows × outputs.len()`).
    fn product_into(
        &self,
        wt: &Tensor,
        (xv, rows): (&[f32], usize),
        out: &mut [f32],
        outputs: std::ops::Range<usize>,
    ) -> Result<()> {
        let (full_dim, in_dim) = self.check_input(xv, rows)?;
        let (start, len) = (outputs.start, outputs.len());
        if out.len() != rows * len {
            candle_core::bail!(
                "linear: {rows} rows need {} output values, found {}",
                rows * len,
                out.len()
            )
        }
        // x·(Wᵀ) with Wᵀ stored row-major: the weight is read in place. (Stored as given,
        // `(out, in)`, the product re-packed the whole weight on every call: 20% of CLIP
        // ViT-L/14's image tower; few-row inputs then took `(W·xᵀ)ᵀ` instead.)
        if let Some(packed) = self.packed_bf16.as_ref().and_then(|p| p.get(start, len)) {
            return matmul_bf16_into(out, len, (xv, in_dim), rows, packed, false, true);
        }
        with_f32_values(wt, |wv| {
            let wv = wv.get(start..).unwrap_or_default();
            if few_rows_preferred(rows) {
                return few_rows_product(out, (xv, rows, in_dim), (wv, full_dim, len));
            }
            let a = MatRef::row_major(xv, rows, in_dim)?;
            let w = MatRef::new(wv, in_dim, len, full_dim, 1)?;
            matmul_into(out, len, a, w, 1.0, true)
        })
    }

    /// The bias of the weight columns `outputs`, `act` and `residual` applied to the product
    /// in `out`; the callers have checked that `residual` is as long as `out`.
    fn epilogue(
        &self,
        act: Act,
        residual: Option<&[f32]>,
        out: &mut [f32],
        outputs: std::ops::Range<usize>,
    ) -> Result<()> {
        let (start, len) = (outputs.start, outputs.len());
        let bias: Option<Vec<f32>> = match &self.bias {
            Some(b) => Some(b.narrow(0, start, len)?.to_vec1()?),
            None => None,
        };
        let epilogue = |row: &mut [f32], res: Option<&[f32]>| {
            if let Some(b) = &bias {
                for (v, &b) in row.iter_mut().zip(b) {
                    *v += b;
                }
            }
            match act {
                Act::Identity => {}
                Act::GeluErf => gelu_erf_in_place(row),
                Act::QuickGelu => quick_gelu_in_place(row),
                Act::Relu => row.iter_mut().for_each(|v| *v = v.max(0.0)),
            }
            if let Some(res) = res {
                for (v, &r) in row.iter_mut().zip(res) {
                    *v += r;
                }
            }
        };
        let width = len.max(1);
        match residual {
            Some(res) => out
                .par_chunks_mut(width)
                .zip(res.par_chunks(width))
                .with_min_len(min_rows_per_task(width))
                .for_each(|(row, res)| epilogue(row, Some(res))),
            None if bias.is_some() || act != Act::Identity => out
                .par_chunks_mut(width)
                .with_min_len(min_rows_per_task(width))
                .for_each(|row| epilogue(row, None)),
            None => {}
        }
        Ok(())
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, Act::Identity)
    }
}

/// Multiply-adds from which [`few_rows_product`] splits the columns over the threads.
const FEW_ROWS_PARALLEL_WORK: usize = 1 << 20;

/// `out (rows × len) = x (rows × in) · w`, `w` the `in × len` columns of a row-major weight
/// `Wᵀ` with rows `stride` apart, for a few rows ([`few_rows_preferred`]): one pass over the
/// weight, its columns split over the threads when the product is large enough to pay for
/// waking them.
fn few_rows_product(
    out: &mut [f32],
    (x, rows, in_dim): (&[f32], usize, usize),
    (w, stride, len): (&[f32], usize, usize),
) -> Result<()> {
    let threads = rayon::current_num_threads();
    if rows * in_dim * len < FEW_ROWS_PARALLEL_WORK || threads < 2 {
        return matmul_few_rows_into(
            out,
            len,
            (x, in_dim),
            (w, stride),
            (rows, in_dim, len),
            1.0,
            false,
        );
    }
    // Column ranges in whole blocks of 32, one per thread, each into its own buffer.
    let chunk = len.div_ceil(threads).next_multiple_of(32);
    let parts = (0..len.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let (c0, cw) = (c * chunk, chunk.min(len - c * chunk));
            let mut part = vec![0f32; rows * cw];
            let cols = w.get(c0..).unwrap_or_default();
            matmul_few_rows_into(
                &mut part,
                cw,
                (x, in_dim),
                (cols, stride),
                (rows, in_dim, cw),
                1.0,
                false,
            )?;
            Ok((c0, cw, part))
        })
        .collect::<Result<Vec<_>>>()?;
    for (c0, cw, part) in parts {
        for (dst, src) in out.chunks_mut(len).zip(part.chunks(cw)) {
            dst[c0..c0 + cw].copy_from_slice(src);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Fixed values in about `[-1.7, 1.7]` (standard deviation ≈ 1), different per `seed`.
    fn values(dims: &[usize], seed: usize) -> Result<Tensor> {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 * 3.4 - 1.7)
            .collect();
        Tensor::from_vec(v, dims, &Device::Cpu)
    }

    /// Values in `[-1.7, 1.7)` with no period (unlike [`values`], whose rows repeat every
    /// 1000 values): a product that reads the wrong columns cannot match by coincidence.
    fn hashed(dims: &[usize], seed: u64) -> Result<Tensor> {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n as u64)
            .map(|i| {
                let mut z = (i + 1)
                    .wrapping_add(seed << 32)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                (z >> 40) as f32 / (1u64 << 24) as f32 * 3.4 - 1.7
            })
            .collect();
        Tensor::from_vec(v, dims, &Device::Cpu)
    }

    /// Largest difference relative to the reference's magnitude (at least 1): f32 results
    /// near 8 are only resolved to ≈ 1e-6, so absolute bounds below that fail at random.
    fn rel_diff(reference: &Tensor, ours: &Tensor) -> Result<f32> {
        let scale = reference.abs()?.max_all()?.to_scalar::<f32>()?.max(1.0);
        Ok((reference - ours)?.abs()?.max_all()?.to_scalar::<f32>()? / scale)
    }

    /// `forward_into` writes what the tensor methods return, over stale buffer contents, for
    /// gemm-sized and few-row inputs, and rejects other layers and slice lengths.
    #[test]
    fn forward_into_equals_the_tensor_methods() -> Result<()> {
        let layer = Linear::new(hashed(&[48, 40], 1)?, Some(hashed(&[48], 2)?));
        for rows in [3, 300] {
            let x = hashed(&[rows, 40], 3)?;
            let res = hashed(&[rows, 48], 4)?;
            let (xv, rv) = (
                x.flatten_all()?.to_vec1::<f32>()?,
                res.flatten_all()?.to_vec1::<f32>()?,
            );
            let cases = [
                (Activation::Identity, None, layer.forward(&x)?),
                (Activation::GeluErf, None, layer.forward_gelu(&x)?),
                (Activation::QuickGelu, None, layer.forward_quick_gelu(&x)?),
                (Activation::Relu, None, layer.forward_relu(&x)?),
                (
                    Activation::Identity,
                    Some(&rv[..]),
                    layer.forward_add(&x, &res)?,
                ),
            ];
            for (act, residual, expected) in cases {
                let mut out = vec![f32::NAN; rows * 48];
                layer.forward_into(&xv, rows, act, residual, &mut out)?;
                let expected = expected.flatten_all()?.to_vec1::<f32>()?;
                assert_eq!(
                    out,
                    expected,
                    "{rows} rows, {act:?}, residual {}",
                    residual.is_some()
                );
            }
            let mut short = vec![0f32; rows * 48 - 1];
            assert!(layer
                .forward_into(&xv, rows, Activation::Identity, None, &mut short)
                .is_err());
            // A residual of the wrong length is refused before anything is written.
            let mut kept = vec![f32::NAN; rows * 48];
            assert!(layer
                .forward_into(&xv, rows, Activation::Identity, Some(&rv[1..]), &mut kept)
                .is_err());
            assert!(
                kept.iter().all(|v| v.is_nan()),
                "{rows} rows: output written"
            );
        }
        let f64_layer = Linear::new(hashed(&[4, 2], 5)?.to_dtype(DType::F64)?, None);
        let err = f64_layer
            .forward_into(&[0.0; 2], 1, Activation::Identity, None, &mut [0.0; 4])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("f32 CPU layer") && err.contains("F64"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn equals_candle_linear_and_gelu() -> Result<()> {
        let dev = Device::Cpu;
        let w = values(&[7, 5], 1)?;
        let b = values(&[7], 2)?;
        let x = values(&[2, 3, 5], 3)?;
        let reference = candle_nn::Linear::new(w.clone(), Some(b.clone())).forward(&x)?;
        let ours = Linear::new(w.clone(), Some(b)).forward(&x)?;
        let d = rel_diff(&reference, &ours)?;
        assert!(d < 1e-6, "linear: {d}");
        let g = Linear::new(w.clone(), Some(Tensor::zeros(7, DType::F32, &dev)?));
        let reference = candle_nn::Linear::new(w.clone(), None)
            .forward(&x)?
            .gelu_erf()?;
        let d = rel_diff(&reference, &g.forward_gelu(&x)?)?;
        assert!(d < 1e-6, "gelu: {d}");
        let y = candle_nn::Linear::new(w.clone(), None).forward(&x)?;
        let reference = (&y * candle_nn::ops::sigmoid(&(&y * 1.702f64)?)?)?;
        let d = rel_diff(&reference, &g.forward_quick_gelu(&x)?)?;
        assert!(d < 1e-6, "quick gelu: {d}");
        let with_bias = Linear::new(w.clone(), Some(values(&[7], 9)?));
        let reference = with_bias.forward(&x)?.relu()?;
        let relu = with_bias.forward_relu(&x)?;
        assert_eq!(rel_diff(&reference, &relu)?, 0.0, "relu");
        let zeros = relu
            .eq(0f32)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?;
        assert!(
            zeros > 0.0 && zeros < 42.0,
            "relu clamps some outputs, not all: {zeros}"
        );
        // A range of outputs alone, on the f32 CPU path and on the composition (f64).
        let full = with_bias.forward(&x)?;
        for (start, len) in [(0, 7), (2, 3), (6, 1)] {
            let part = with_bias.forward_outputs(&x, start, len)?;
            assert_eq!(part.dims(), [2, 3, len]);
            let d = rel_diff(&full.narrow(2, start, len)?, &part)?;
            assert!(d < 1e-6, "outputs {start}+{len}: {d}");
            let wide = Linear::new(
                w.to_dtype(DType::F64)?,
                Some(values(&[7], 9)?.to_dtype(DType::F64)?),
            );
            let part64 = wide.forward_outputs(&x.to_dtype(DType::F64)?, start, len)?;
            let d = rel_diff(&part, &part64.to_dtype(DType::F32)?)?;
            assert!(d < 1e-6, "f64 outputs {start}+{len}: {d}");
        }
        assert!(with_bias.forward_outputs(&x, 5, 3).is_err());
        // bf16 products: within bf16's rounding of the f32 layer (activation and residual
        // passes included); back to f32, the same values as before.
        let wide = Linear::new(values(&[96, 200], 10)?, Some(values(&[96], 11)?));
        let xs = values(&[3, 17, 200], 12)?;
        let res = values(&[3, 17, 96], 13)?;
        let f32_out = [
            wide.forward(&xs)?,
            wide.forward_gelu(&xs)?,
            wide.forward_add(&xs, &res)?,
        ];
        let mut half = wide.clone();
        let on = half.set_cpu_matmul(CpuMatmul::Bf16)?;
        assert_eq!(on, super::super::bf16_gemm::bf16_supported());
        let bf16_out = [
            half.forward(&xs)?,
            half.forward_gelu(&xs)?,
            half.forward_add(&xs, &res)?,
        ];
        for (a, b) in f32_out.iter().zip(&bf16_out) {
            let d = rel_diff(a, b)?;
            // |Σ x·w| ≤ 200 · 1.7² ≈ 580; bf16 inputs: ≲ 2⁻⁸ of Σ|x·w| in the worst case, far
            // less for these mixed signs.
            assert!(d < 2e-3, "bf16 vs f32: {d}");
            if on {
                assert!(d > 0.0, "bf16 products should differ from f32 somewhere");
            }
        }
        // Output ranges packed on their own give the whole product's columns; a range not
        // packed stays in f32; a range outside the layer is refused.
        let mut parts = wide.clone();
        assert_eq!(
            parts.set_cpu_matmul_with_outputs(CpuMatmul::Bf16, &[0..40, 40..96, 7..8])?,
            on
        );
        for (start, len) in [(0, 40), (40, 56), (7, 1)] {
            let got = parts.forward_outputs(&xs, start, len)?;
            assert_eq!(rel_diff(&bf16_out[0].narrow(2, start, len)?, &got)?, 0.0);
        }
        let unpacked = parts.forward_outputs(&xs, 10, 20)?;
        assert_eq!(rel_diff(&f32_out[0].narrow(2, 10, 20)?, &unpacked)?, 0.0);
        if on {
            assert!(parts
                .set_cpu_matmul_with_outputs(CpuMatmul::Bf16, &[90..97, 0..1])
                .is_err());
            assert!(parts
                .set_cpu_matmul_with_outputs(CpuMatmul::Bf16, &[0..1, 5..5])
                .is_err());
        }
        assert!(!half.set_cpu_matmul(CpuMatmul::F32)?);
        assert_eq!(rel_diff(&f32_out[0], &half.forward(&xs)?)?, 0.0);
        let mut on_f64 = Linear::new(w.to_dtype(DType::F64)?, None);
        assert!(
            !on_f64.set_cpu_matmul(CpuMatmul::Bf16)?,
            "f64 weights keep f64"
        );
        // A few rows against a weight large enough for its columns to be split over the
        // threads (in column ranges of whole 32-column blocks), alone and as a range of
        // outputs starting inside a block.
        let w_wide = hashed(&[600, 300], 14)?;
        let b_wide = hashed(&[600], 15)?;
        let x_few = hashed(&[1, 7, 300], 16)?;
        let reference =
            candle_nn::Linear::new(w_wide.clone(), Some(b_wide.clone())).forward(&x_few)?;
        let wide_layer = Linear::new(w_wide, Some(b_wide));
        let d = rel_diff(&reference, &wide_layer.forward(&x_few)?)?;
        assert!(d < 1e-6, "7 rows, 600 outputs: {d}");
        let part = wide_layer.forward_outputs(&x_few, 37, 500)?;
        let d = rel_diff(&reference.narrow(2, 37, 500)?, &part)?;
        assert!(d < 1e-6, "7 rows, outputs 37+500: {d}");
        // Many rows (the input-first product) as well as few.
        let w_big = values(&[40, 24], 4)?;
        let b_big = values(&[40], 5)?;
        let x_big = values(&[3, 50, 24], 6)?;
        let reference =
            candle_nn::Linear::new(w_big.clone(), Some(b_big.clone())).forward(&x_big)?;
        let d = rel_diff(
            &reference,
            &Linear::new(w_big, Some(b_big)).forward(&x_big)?,
        )?;
        assert!(d < 1e-6, "150 rows: {d}");
        // The projection plus a residual (given strided) in the bias pass; a wrong shape fails.
        let res = values(&[2, 7, 3], 7)?.transpose(1, 2)?;
        let with_bias = Linear::new(w.clone(), Some(values(&[7], 8)?));
        let reference = (&res + with_bias.forward(&x)?)?;
        let d = (reference - with_bias.forward_add(&x, &res)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert_eq!(d, 0.0, "residual");
        assert!(with_bias.forward_add(&x, &res.narrow(1, 0, 2)?).is_err());
        let nb = Linear::new(w.clone(), None).forward(&x.narrow(1, 1, 2)?)?;
        let reference = candle_nn::Linear::new(w, None).forward(&x.narrow(1, 1, 2)?)?;
        assert_eq!(nb.dims(), &[2, 2, 7]);
        let d = rel_diff(&reference, &nb)?;
        assert!(d < 1e-6, "no bias, strided input: {d}");
        Ok(())
    }
}
