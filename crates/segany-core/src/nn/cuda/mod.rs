//! segany's CUDA kernels (`kernels.cu`, compiled to PTX by `build.rs`) as candle custom ops:
//! the row-wise passes that candle composes from several strided kernels, each one pass here,
//! for f32, f16 and bf16 with f32 arithmetic.
//!
//! - [`bias_act`]: a product's bias, activation and residual in one pass (candle: a strided
//!   broadcast add, the activation, another add);
//! - [`layer_norm`]: two-pass LayerNorm, one warp per row (candle's composition: 13 kernels;
//!   its fused kernel takes the variance as `E[x²] − mean²`);
//! - [`softmax_rows`]: softmax over the last dimension: rows of 1024 to 4096 values get a block
//!   each and are read once into registers (the encoder's global attention); other rows get a
//!   warp with an online first pass;
//! - [`qkv_heads`]: a fused `qkv` projection split into per-head q, k, v in one pass (candle: a
//!   5-D permute copy, then a copy per part);
//! - [`window_partition`], [`rel_pos_qkv`], [`merge_heads`]: the SAM encoder's attention
//!   around its two products: the windows zero-padded in one gather; q·scale, the decomposed
//!   relative-position terms, k with the terms' indicator columns, and v in one pass over the
//!   `qkv` projection; the heads merged back into unpadded tokens in one gather (candle: pads
//!   and strided copies, two batched products for the terms and concatenations, about 20
//!   kernels per layer).
//!
//! Callers dispatch here for CUDA tensors; every other device keeps its own path.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{
    CpuStorage, CudaDevice, CudaStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result,
    Shape, Tensor,
};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/kernels.ptx"));
const MODULE: &str = "segany_kernels";
/// Threads per block; the row kernels give each row a warp.
const THREADS: u32 = 256;
/// Rows from this length up to [`LONG_ROW_MAX`] get a block each in the softmax (the kernel's
/// `SOFTMAX_PER_THREAD` values per thread).
const LONG_ROW_MIN: usize = 1024;
const LONG_ROW_MAX: usize = THREADS as usize * 16;

/// The activation of [`bias_act`] (the kernel's `act` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// None.
    Identity = 0,
    /// Exact GELU, `x·Φ(x)`.
    GeluErf = 1,
    /// `max(x, 0)`.
    Relu = 2,
}

/// Whether the kernels take `t`: a CUDA tensor of f32, f16 or bf16.
pub fn supported(t: &Tensor) -> bool {
    t.device().is_cuda() && matches!(t.dtype(), DType::F32 | DType::F16 | DType::BF16)
}

fn view<'a, T: CudaDType>(s: &'a CudaStorage, l: &Layout) -> Result<CudaView<'a, T>> {
    let (o1, o2) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("segany CUDA op: input is not contiguous".into()))?;
    Ok(T::as_cuda_slice(s)?.slice(o1..o2))
}

fn kernel_suffix(dtype: DType) -> Result<&'static str> {
    match dtype {
        DType::F32 => Ok("f32"),
        DType::F16 => Ok("f16"),
        DType::BF16 => Ok("bf16"),
        other => candle_core::bail!("segany CUDA kernels take f32, f16 or bf16, not {other:?}"),
    }
}

fn cpu_refused(name: &str) -> Result<(CpuStorage, Shape)> {
    candle_core::bail!("{name} is a CUDA kernel: its caller dispatches CPU tensors elsewhere")
}

/// Runs one of the kernels for the element type `T` and wraps the output.
trait Launch {
    fn name(&self) -> &'static str;
    fn launch<T: CudaDType + DeviceRepr>(
        &self,
        dev: &CudaDevice,
        inputs: &[(&CudaStorage, &Layout)],
    ) -> Result<CudaSlice<T>>;

    /// The output's shape for the first input's (the same by default).
    fn out_shape(&self, input: &Shape) -> Shape {
        input.clone()
    }

    fn run(&self, inputs: &[(&CudaStorage, &Layout)]) -> Result<(CudaStorage, Shape)> {
        let (first, layout) = inputs[0];
        let dev = first.device().clone();
        let storage = match first.dtype() {
            DType::F32 => f32::wrap_cuda_slice(self.launch::<f32>(&dev, inputs)?, dev),
            DType::F16 => half::f16::wrap_cuda_slice(self.launch::<half::f16>(&dev, inputs)?, dev),
            DType::BF16 => {
                half::bf16::wrap_cuda_slice(self.launch::<half::bf16>(&dev, inputs)?, dev)
            }
            other => candle_core::bail!("{}: unsupported dtype {other:?}", self.name()),
        };
        Ok((storage, self.out_shape(layout.shape())))
    }
}

/// `CustomOp1`/`CustomOp2`/`CustomOp3` for [`Launch`] ops: CUDA runs the kernel on the
/// inputs in order; the CPU refuses (callers dispatch only CUDA tensors here).
macro_rules! custom_op {
    (1, $op:ty) => {
        impl CustomOp1 for $op {
            fn name(&self) -> &'static str {
                Launch::name(self)
            }
            fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
                cpu_refused(Launch::name(self))
            }
            fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
                self.run(&[(s, l)])
            }
        }
    };
    (2, $op:ty) => {
        impl CustomOp2 for $op {
            fn name(&self) -> &'static str {
                Launch::name(self)
            }
            fn cpu_fwd(
                &self,
                _: &CpuStorage,
                _: &Layout,
                _: &CpuStorage,
                _: &Layout,
            ) -> Result<(CpuStorage, Shape)> {
                cpu_refused(Launch::name(self))
            }
            fn cuda_fwd(
                &self,
                s1: &CudaStorage,
                l1: &Layout,
                s2: &CudaStorage,
                l2: &Layout,
            ) -> Result<(CudaStorage, Shape)> {
                self.run(&[(s1, l1), (s2, l2)])
            }
        }
    };
    (3, $op:ty) => {
        impl CustomOp3 for $op {
            fn name(&self) -> &'static str {
                Launch::name(self)
            }
            fn cpu_fwd(
                &self,
                _: &CpuStorage,
                _: &Layout,
                _: &CpuStorage,
                _: &Layout,
                _: &CpuStorage,
                _: &Layout,
            ) -> Result<(CpuStorage, Shape)> {
                cpu_refused(Launch::name(self))
            }
            #[allow(clippy::too_many_arguments)]
            fn cuda_fwd(
                &self,
                s1: &CudaStorage,
                l1: &Layout,
                s2: &CudaStorage,
                l2: &Layout,
                s3: &CudaStorage,
                l3: &Layout,
            ) -> Result<(CudaStorage, Shape)> {
                self.run(&[(s1, l1), (s2, l2), (s3, l3)])
            }
        }
    };
}

fn rows_cols(layout: &Layout) -> Result<(usize, usize)> {
    let cols = *layout.dims().last().unwrap_or(&1);
    Ok((layout.shape().elem_count() / cols.max(1), cols))
}

/// The kernel `<name>_{f32|f16|bf16}` for a dtype, loaded once per device (a macro: candle
/// does not export the function type).
macro_rules! load {
    ($dev:expr, $kernel:literal, $dtype:expr) => {
        $dev.get_or_load_custom_func(
            &format!(concat!($kernel, "_{}"), kernel_suffix($dtype)?),
            MODULE,
            PTX,
        )
    };
}

/// Grid-stride launch over `n` elements.
fn flat_grid(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(THREADS as usize).clamp(1, 132 * 16) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn row_grid(rows: usize) -> LaunchConfig {
    let per_block = (THREADS / 32) as usize;
    LaunchConfig {
        grid_dim: (rows.div_ceil(per_block).max(1) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

struct BiasAct {
    act: Activation,
    bias: bool,
    residual: bool,
}

impl Launch for BiasAct {
    fn name(&self) -> &'static str {
        "segany-bias-act"
    }

    fn launch<T: CudaDType + DeviceRepr>(
        &self,
        dev: &CudaDevice,
        inputs: &[(&CudaStorage, &Layout)],
    ) -> Result<CudaSlice<T>> {
        let (xs, xl) = inputs[0];
        let (_, cols) = rows_cols(xl)?;
        let n = xl.shape().elem_count();
        let x = view::<T>(xs, xl)?;
        let mut rest = inputs[1..].iter();
        let bias = match self.bias {
            true => rest.next().map(|(s, l)| view::<T>(s, l)).transpose()?,
            false => None,
        };
        let residual = match self.residual {
            true => rest.next().map(|(s, l)| view::<T>(s, l)).transpose()?,
            false => None,
        };
        let func = load!(dev, "bias_act", xs.dtype())?;
        // SAFETY: every element is written by the kernel.
        let out = unsafe { dev.alloc::<T>(n)? };
        let null = 0u64;
        let mut b = func.builder();
        b.arg(&x);
        match &bias {
            Some(v) => b.arg(v),
            None => b.arg(&null),
        };
        match &residual {
            Some(v) => b.arg(v),
            None => b.arg(&null),
        };
        b.arg(&out);
        let (n64, cols32, act) = (n as i64, cols as i32, self.act as i32);
        b.arg(&n64);
        b.arg(&cols32);
        b.arg(&act);
        let cfg = flat_grid(n);
        // SAFETY: the arguments match the kernel's signature; the views hold `n` and `cols`
        // values as checked by the caller.
        unsafe { b.launch(cfg) }.w()?;
        Ok(out)
    }
}

custom_op!(1, BiasAct);
custom_op!(2, BiasAct);
custom_op!(3, BiasAct);

/// `act(x + bias) + residual` over the last dimension (`bias`: that dimension's length;
/// `residual`: `x`'s shape), in one pass.
pub fn bias_act(
    x: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
    act: Activation,
) -> Result<Tensor> {
    let x = x.contiguous()?;
    let cols = x.dim(candle_core::D::Minus1)?;
    if let Some(b) = bias {
        if b.dims() != [cols] || b.dtype() != x.dtype() {
            candle_core::bail!(
                "bias_act: bias {:?} {:?} for {:?}",
                b.dims(),
                b.dtype(),
                x.dims()
            )
        }
    }
    if let Some(r) = residual {
        if r.dims() != x.dims() || r.dtype() != x.dtype() {
            candle_core::bail!("bias_act: residual {:?} for {:?}", r.dims(), x.dims())
        }
    }
    let op = BiasAct {
        act,
        bias: bias.is_some(),
        residual: residual.is_some(),
    };
    match (bias, residual) {
        (None, None) => x.apply_op1_no_bwd(&op),
        (Some(b), None) => x.apply_op2_no_bwd(&b.contiguous()?, &op),
        (None, Some(r)) => x.apply_op2_no_bwd(&r.contiguous()?, &op),
        (Some(b), Some(r)) => x.apply_op3_no_bwd(&b.contiguous()?, &r.contiguous()?, &op),
    }
}

struct LayerNormRows {
    eps: f32,
}

impl Launch for LayerNormRows {
    fn name(&self) -> &'static str {
        "segany-layer-norm"
    }

    fn launch<T: CudaDType + DeviceRepr>(
        &self,
        dev: &CudaDevice,
        inputs: &[(&CudaStorage, &Layout)],
    ) -> Result<CudaSlice<T>> {
        let (xs, xl) = inputs[0];
        let (rows, cols) = rows_cols(xl)?;
        let x = view::<T>(xs, xl)?;
        let w = view::<T>(inputs[1].0, inputs[1].1)?;
        let b = view::<T>(inputs[2].0, inputs[2].1)?;
        let func = load!(dev, "layer_norm", xs.dtype())?;
        // SAFETY: every element is written by the kernel.
        let out = unsafe { dev.alloc::<T>(rows * cols)? };
        let mut builder = func.builder();
        let (rows32, cols32) = (rows as i32, cols as i32);
        builder.arg(&x);
        builder.arg(&w);
        builder.arg(&b);
        builder.arg(&out);
        builder.arg(&rows32);
        builder.arg(&cols32);
        builder.arg(&self.eps);
        // SAFETY: the arguments match the kernel's signature.
        unsafe { builder.launch(row_grid(rows)) }.w()?;
        Ok(out)
    }
}

custom_op!(3, LayerNormRows);

/// LayerNorm over the last dimension with `weight` and `bias` of its length (two passes, f32
/// arithmetic).
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let cols = x.dim(candle_core::D::Minus1)?;
    for t in [weight, bias] {
        if t.dims() != [cols] || t.dtype() != x.dtype() {
            candle_core::bail!(
                "layer_norm: parameter {:?} {:?} for {:?}",
                t.dims(),
                t.dtype(),
                x.dims()
            )
        }
    }
    x.contiguous()?.apply_op3_no_bwd(
        &weight.contiguous()?,
        &bias.contiguous()?,
        &LayerNormRows { eps: eps as f32 },
    )
}

struct SoftmaxRows;

impl Launch for SoftmaxRows {
    fn name(&self) -> &'static str {
        "segany-softmax"
    }

    fn launch<T: CudaDType + DeviceRepr>(
        &self,
        dev: &CudaDevice,
        inputs: &[(&CudaStorage, &Layout)],
    ) -> Result<CudaSlice<T>> {
        let (xs, xl) = inputs[0];
        let (rows, cols) = rows_cols(xl)?;
        let x = view::<T>(xs, xl)?;
        // SAFETY: every element is written by the kernel.
        let out = unsafe { dev.alloc::<T>(rows * cols)? };
        let (rows32, cols32) = (rows as i32, cols as i32);
        if (LONG_ROW_MIN..=LONG_ROW_MAX).contains(&cols) {
            // A block per row, the row held in registers: one read of the logits.
            let func = load!(dev, "softmax_long_rows", xs.dtype())?;
            let mut builder = func.builder();
            builder.arg(&x);
            builder.arg(&out);
            builder.arg(&cols32);
            let cfg = LaunchConfig {
                grid_dim: (rows as u32, 1, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: the arguments match the kernel's signature; cols ≤ LONG_ROW_MAX.
            unsafe { builder.launch(cfg) }.w()?;
            return Ok(out);
        }
        let func = load!(dev, "softmax_rows", xs.dtype())?;
        let mut builder = func.builder();
        builder.arg(&x);
        builder.arg(&out);
        builder.arg(&rows32);
        builder.arg(&cols32);
        // SAFETY: the arguments match the kernel's signature.
        unsafe { builder.launch(row_grid(rows)) }.w()?;
        Ok(out)
    }
}

custom_op!(1, SoftmaxRows);

/// Softmax over the last dimension (f32 arithmetic).
pub fn softmax_rows(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&SoftmaxRows)
}

struct QkvHeads {
    batch: usize,
    tokens: usize,
    heads: usize,
    head_dim: usize,
}

impl Launch for QkvHeads {
    fn name(&self) -> &'static str {
        "segany-qkv-heads"
    }

    fn out_shape(&self, _: &Shape) -> Shape {
        Shape::from((3, self.batch * self.heads, self.tokens, self.head_dim))
    }

    fn launch<T: CudaDType + DeviceRepr>(
        &self,
        dev: &CudaDevice,
        inputs: &[(&CudaStorage, &Layout)],
    ) -> Result<CudaSlice<T>> {
        let (xs, xl) = inputs[0];
        let n = xl.shape().elem_count();
        let x = view::<T>(xs, xl)?;
        let func = load!(dev, "qkv_heads", xs.dtype())?;
        // SAFETY: every element is written by the kernel.
        let out = unsafe { dev.alloc::<T>(n)? };
        let mut builder = func.builder();
        let dims = [self.batch, self.tokens, self.heads, self.head_dim].map(|v| v as i32);
        builder.arg(&x);
        builder.arg(&out);
        for v in &dims {
            builder.arg(v);
        }
        let cfg = flat_grid(n);
        // SAFETY: the arguments match the kernel's signature; the input holds `n` values.
        unsafe { builder.launch(cfg) }.w()?;
        Ok(out)
    }
}

custom_op!(1, QkvHeads);

/// The `(3, B·heads, N, head_dim)` q, k, v heads of a `(B, N, 3·C)` projection, in one pass.
pub fn qkv_heads(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    let (batch, tokens, width) = qkv.dims3()?;
    if heads == 0 || width % (3 * heads) != 0 {
        candle_core::bail!("qkv_heads: width {width} is not 3 × {heads} heads")
    }
    qkv.contiguous()?.apply_op1_no_bwd(&QkvHeads {
        batch,
        tokens,
        heads,
        head_dim: width / (3 * heads),
    })
}

/// Threads per block of the one-block-per-token kernels (window partition, head merge, the
/// relative-position operands).
const ROW_THREADS: u32 = 128;

fn token_grid(rows: usize, shared_mem_bytes: u32) -> Result<LaunchConfig> {
    let rows = u32::try_from(rows)
        .map_err(|_| candle_core::Error::Msg(format!("segany CUDA op: {rows} rows")))?;
    Ok(LaunchConfig {
        grid_dim: (rows.max(1), 1, 1),
        block_dim: (ROW_THREADS, 1, 1),
        shared_mem_bytes,
    })
}

fn i32s<const N: usize>(values: [usize; N]) -> Result<[i32; N]> {
    let mut out = [0i32; N];
    for (o, v) in out.iter_mut().zip(values) {
        *o = i32::try_from(v)
            .map_err(|_| candle_core::Error::Msg(format!("segany CUDA op: size {v}")))?;
    }
    Ok(out)
}

/// The windows of a token grid (see [`window_partition`]).
struct WindowPartition {
    grid: (usize, usize, usize, usize),
    window: usize,
}

impl WindowPartition {
    fn counts(&self) -> (usize, usize) {
        let (_, h, w, _) = self.grid;
        (h.div_ceil(self.window), w.div_ceil(self.window))
    }
}

impl Launch for WindowPartition {
    fn name(&self) -> &'static str {
        "segany-window-partition"
    }

    fn out_shape(&self, _: &Shape) -> Shape {
        let (b, _, _, c) = self.grid;
        let (nh, nw) = self.counts();
        Shape::from((b * nh * nw, self.window, self.window, c))
    }

    fn launch<T: CudaDType + DeviceRepr>(
        &self,
        dev: &CudaDevice,
        inputs: &[(&CudaStorage, &Layout)],
    ) -> Result<CudaSlice<T>> {
        let (xs, xl) = inputs[0];
        let (b, h, w, c) = self.grid;
        let (nh, nw) = self.counts();
        let rows = b * nh * nw * self.window * self.window;
        let x = view::<T>(xs, xl)?;
        let func = load!(dev, "window_partition", xs.dtype())?;
        // SAFETY: every element is written by the kernel (copied or zero).
        let out = unsafe { dev.alloc::<T>(rows * c)? };
        let args = i32s([h, w, c, self.window, self.window, nh, nw])?;
        let mut builder = func.builder();
        builder.arg(&x);
        builder.arg(&out);
        for v in &args {
            builder.arg(v);
        }
        // SAFETY: the arguments match the kernel's signature; the input holds B·H·W·C values.
        unsafe { builder.launch(token_grid(rows, 0)?) }.w()?;
        Ok(out)
    }
}

custom_op!(1, WindowPartition);

/// SAM's `window_partition` in one pass: `(B, H, W, C)` → `(B·nh·nw, ws, ws, C)` windows
/// (`nh = ⌈H/ws⌉`, `nw = ⌈W/ws⌉`), zero where a window reaches past the grid.
pub fn window_partition(x: &Tensor, window: usize) -> Result<Tensor> {
    let grid = x.dims4()?;
    if window == 0 {
        candle_core::bail!("window_partition: window size 0")
    }
    x.contiguous()?
        .apply_op1_no_bwd(&WindowPartition { grid, window })
}

/// The attention's heads back to tokens (see [`merge_heads`]).
struct MergeHeads {
    grid: (usize, usize, usize),
    heads: usize,
    head_dim: usize,
    window: (usize, usize),
}

impl Launch for MergeHeads {
    fn name(&self) -> &'static str {
        "segany-merge-heads"
    }

    fn out_shape(&self, _: &Shape) -> Shape {
        let (b, h, w) = self.grid;
        Shape::from((b, h, w, self.heads * self.head_dim))
    }

    fn launch<T: CudaDType + DeviceRepr>(
        &self,
        dev: &CudaDevice,
        inputs: &[(&CudaStorage, &Layout)],
    ) -> Result<CudaSlice<T>> {
        let (os, ol) = inputs[0];
        let (b, h, w) = self.grid;
        let (wh, ww) = self.window;
        let c = self.heads * self.head_dim;
        let o = view::<T>(os, ol)?;
        let func = load!(dev, "merge_heads", os.dtype())?;
        // SAFETY: every element is written by the kernel.
        let out = unsafe { dev.alloc::<T>(b * h * w * c)? };
        let args = i32s([
            h,
            w,
            self.heads,
            self.head_dim,
            wh,
            ww,
            h.div_ceil(wh),
            w.div_ceil(ww),
        ])?;
        let mut builder = func.builder();
        builder.arg(&o);
        builder.arg(&out);
        for v in &args {
            builder.arg(v);
        }
        // SAFETY: the arguments match the kernel's signature; the caller checked the input's
        // shape against the windows.
        unsafe { builder.launch(token_grid(b * h * w, 0)?) }.w()?;
        Ok(out)
    }
}

custom_op!(1, MergeHeads);

/// The attention's output `(B·nh·nw·heads, wh·ww, d)` (per window and head, windows of
/// `wh × ww` tokens as [`window_partition`] makes them; global attention: one window of the
/// whole `h × w` grid) back to `(B, h, w, heads·d)` tokens in one pass, the windows' padding
/// dropped: SAM's head merge and `window_unpartition`.
pub fn merge_heads(
    o: &Tensor,
    heads: usize,
    (b, h, w): (usize, usize, usize),
    (wh, ww): (usize, usize),
) -> Result<Tensor> {
    let (rows, n, head_dim) = o.dims3()?;
    if wh == 0 || ww == 0 || n != wh * ww || rows != b * h.div_ceil(wh) * w.div_ceil(ww) * heads {
        candle_core::bail!(
            "merge_heads: {:?} is not {heads} heads of {b} × {h} × {w} tokens in {wh} × {ww} windows",
            o.dims()
        )
    }
    o.contiguous()?.apply_op1_no_bwd(&MergeHeads {
        grid: (b, h, w),
        heads,
        head_dim,
        window: (wh, ww),
    })
}

/// The attention's widened operands (see [`rel_pos_qkv`]).
struct RelPosQkv {
    windows: usize,
    window: (usize, usize),
    heads: usize,
    head_dim: usize,
    scale: f32,
}

impl RelPosQkv {
    fn width(&self) -> usize {
        self.head_dim + self.window.0 + self.window.1
    }

    fn len(&self) -> usize {
        let rows = self.windows * self.heads * self.window.0 * self.window.1;
        rows * (2 * self.width() + self.head_dim)
    }

    /// Shared memory of the terms kernel: the longer axis' table of one line, as f32.
    fn terms_shared(&self) -> usize {
        self.window.0.max(self.window.1) * self.head_dim * std::mem::size_of::<f32>()
    }
}

/// Shared memory a kernel may take without opting in to more (every CUDA GPU has it).
const SHARED_DEFAULT: usize = 48 * 1024;

impl Launch for RelPosQkv {
    fn name(&self) -> &'static str {
        "segany-rel-pos-qkv"
    }

    fn out_shape(&self, _: &Shape) -> Shape {
        Shape::from(self.len())
    }

    fn launch<T: CudaDType + DeviceRepr>(
        &self,
        dev: &CudaDevice,
        inputs: &[(&CudaStorage, &Layout)],
    ) -> Result<CudaSlice<T>> {
        let (xs, xl) = inputs[0];
        let x = view::<T>(xs, xl)?;
        let tables = view::<T>(inputs[1].0, inputs[1].1)?;
        let (wh, ww) = self.window;
        // SAFETY: every element is written: qa's first d columns, ka and v by the copy
        // kernel, qa's wh + ww term columns by the terms kernel.
        let out = unsafe { dev.alloc::<T>(self.len())? };
        let [windows, heads, d, wh32, ww32] =
            i32s([self.windows, self.heads, self.head_dim, wh, ww])?;

        let copy = load!(dev, "rel_pos_copy", xs.dtype())?;
        let mut builder = copy.builder();
        builder.arg(&x);
        builder.arg(&out);
        for v in [&windows, &heads, &d, &wh32, &ww32] {
            builder.arg(v);
        }
        builder.arg(&self.scale);
        // SAFETY: the arguments match the kernel's signature; the caller checked the shapes.
        unsafe { builder.launch(token_grid(self.windows * wh * ww, 0)?) }.w()?;

        let terms = load!(dev, "rel_pos_terms", xs.dtype())?;
        let longest = wh.max(ww);
        let cfg = LaunchConfig {
            grid_dim: (
                u32::try_from(self.windows * longest)
                    .map_err(|_| candle_core::Error::Msg("rel_pos_qkv: too many windows".into()))?,
                2,
                (self.heads * longest).div_ceil(ROW_THREADS as usize) as u32,
            ),
            block_dim: (ROW_THREADS, 1, 1),
            shared_mem_bytes: self.terms_shared() as u32,
        };
        let mut builder = terms.builder();
        builder.arg(&x);
        builder.arg(&tables);
        builder.arg(&out);
        for v in [&heads, &d, &wh32, &ww32] {
            builder.arg(v);
        }
        // SAFETY: the arguments match the kernel's signature; the shared memory holds one
        // line's table as f32 (checked against the default limit by the caller).
        unsafe { builder.launch(cfg) }.w()?;
        Ok(out)
    }
}

custom_op!(2, RelPosQkv);

/// The operands of attention with SAM's decomposed relative positions, from the `(B', N, 3C)`
/// `qkv` projection of `B'` windows of `wh × ww` tokens (`N = wh·ww`, `C = heads·d`), with
/// `tables` = the tables `rh (wh, wh, d)` then `rw (ww, ww, d)` of `get_rel_pos`, flattened
/// into one: in two passes (a copy, and the terms with one line's table in shared memory),
///
/// - `qa (B'·heads, N, d + wh + ww)`: `[q·scale, q·rh[i, a], q·rw[j, b]]` for token `(i, j)`;
/// - `ka (B'·heads, N, d + wh + ww)`: `[k, 1 at a = i, 1 at wh + b = j]`;
/// - `v (B'·heads, N, d)`.
///
/// `qa·kaᵀ` is then `q·kᵀ·scale` plus `add_decomposed_rel_pos`'s terms in one product. The
/// terms are sums in f32 of the unscaled q, rounded once to the dtype, as the composition's
/// products compute them. `None` when a line's table exceeds the kernel's shared memory
/// (`max(wh, ww)·d > 12288`); the caller then composes.
pub fn rel_pos_qkv(
    qkv: &Tensor,
    tables: &Tensor,
    (wh, ww): (usize, usize),
    heads: usize,
    scale: f32,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    let (windows, n, width) = qkv.dims3()?;
    let d = width / (3 * heads.max(1));
    let dtype = qkv.dtype();
    if heads == 0
        || width != 3 * heads * d
        || n != wh * ww
        || tables.elem_count() != (wh * wh + ww * ww) * d
        || tables.dtype() != dtype
    {
        candle_core::bail!(
            "rel_pos_qkv: qkv {:?} {dtype:?} with {heads} heads in {wh} × {ww} windows, tables {:?} {:?}",
            qkv.dims(),
            tables.dims(),
            tables.dtype()
        )
    }
    let op = RelPosQkv {
        windows,
        window: (wh, ww),
        heads,
        head_dim: d,
        scale,
    };
    if op.terms_shared() > SHARED_DEFAULT {
        return Ok(None);
    }
    let (qkv, tables) = (qkv.contiguous()?, tables.contiguous()?);
    let all = qkv.apply_op2_no_bwd(&tables, &op)?;
    let (rows, wide) = (windows * heads, op.width());
    let block = rows * n * wide;
    Ok(Some((
        all.narrow(0, 0, block)?.reshape((rows, n, wide))?,
        all.narrow(0, block, block)?.reshape((rows, n, wide))?,
        all.narrow(0, 2 * block, rows * n * d)?
            .reshape((rows, n, d))?,
    )))
}
