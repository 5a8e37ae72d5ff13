//! Multi-head self-attention with decomposed relative positions.

use crate::fused_softmax::rel_pos_softmax;
use crate::rel_pos::{get_rel_pos, key_indicators, rel_pos_logits, rel_pos_terms};
use crate::window::{window_partition, window_unpartition};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::fused_attention::{fused_attention, fused_attention_into, Geometry};
use segany_core::nn::{
    is_cpu_f32, linear, linear_no_bias, with_f32_values, Activation, CpuMatmul, Linear,
};

/// Self-attention over a `(B, H, W, C)` token grid (`attn.qkv`, `attn.proj`, `attn.rel_pos_{h,w}`).
#[derive(Debug, Clone)]
pub struct Attention {
    qkv: Linear,
    proj: Linear,
    num_heads: usize,
    scale: f64,
    rel_pos: Option<(Tensor, Tensor)>,
    /// The tables for the `size × size` grid the configuration expects, made once.
    gathered: Option<RelTables>,
}

/// [`get_rel_pos`] of both tables and, off the CPU, the [`key_indicators`] for one
/// `size × size` grid (`rel_pos_len = 2·size − 1`). Made once per layer: on a GPU each is a
/// copy between host and device, which stalls the queue of kernels.
#[derive(Debug, Clone)]
struct RelTables {
    size: usize,
    rh: Tensor,
    rw: Tensor,
    /// `None` on the CPU, whose fused kernels add the terms themselves.
    keys: Option<Tensor>,
    /// On CUDA, `rh` then `rw` flattened into one tensor (the kernels' input).
    #[cfg(feature = "cuda")]
    packed: Option<Tensor>,
}

impl RelTables {
    fn new(size: (usize, usize), (table_h, table_w): (&Tensor, &Tensor)) -> Result<Self> {
        let (h, w) = size;
        let (rh, rw) = (get_rel_pos(h, h, table_h)?, get_rel_pos(w, w, table_w)?);
        let keys = match table_h.device().is_cpu() {
            true => None,
            false => Some(key_indicators(h, w, table_h.dtype(), table_h.device())?),
        };
        #[cfg(feature = "cuda")]
        let packed = match table_h.device().is_cuda() {
            true => Some(Tensor::cat(&[rh.flatten_all()?, rw.flatten_all()?], 0)?),
            false => None,
        };
        Ok(Self {
            size: h,
            rh,
            rw,
            keys,
            #[cfg(feature = "cuda")]
            packed,
        })
    }
}

impl Attention {
    /// Loads the layer. Relative-position tables may have any length (they are resized on use).
    /// `rel_pos_len` is the table length expected when the checkpoint holds none
    /// (`2·size − 1` for a `size`×`size` attention grid).
    pub fn new(
        dim: usize,
        num_heads: usize,
        qkv_bias: bool,
        use_rel_pos: bool,
        rel_pos_len: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let qkv = if qkv_bias {
            linear(dim, dim * 3, vb.pp("qkv"))?
        } else {
            linear_no_bias(dim, dim * 3, vb.pp("qkv"))?
        };
        let proj = linear(dim, dim, vb.pp("proj"))?;
        let head_dim = dim / num_heads;
        let rel_pos = if use_rel_pos {
            let table = |name: &str| {
                if vb.contains_tensor(name) {
                    vb.get_unchecked(name)
                } else {
                    vb.get((rel_pos_len, head_dim), name)
                }
            };
            let h = table("rel_pos_h")?;
            let w = table("rel_pos_w")?;
            for (name, t) in [("rel_pos_h", &h), ("rel_pos_w", &w)] {
                if t.rank() != 2 || t.dim(1)? != head_dim {
                    candle_core::bail!(
                        "{}: expected [L, {head_dim}] relative-position table, found {:?}",
                        vb.prefix().to_string() + "." + name,
                        t.dims()
                    );
                }
            }
            Some((h, w))
        } else {
            None
        };
        let gathered = match &rel_pos {
            Some((h, w)) => {
                let size = rel_pos_len.div_ceil(2);
                Some(RelTables::new((size, size), (h, w))?)
            }
            None => None,
        };
        Ok(Self {
            qkv,
            proj,
            num_heads,
            scale: (head_dim as f64).powf(-0.5),
            rel_pos,
            gathered,
        })
    }

    /// The relative-position tables for an `h × w` grid, from the cache when it is the
    /// expected size.
    fn rel_tables(&self, h: usize, w: usize) -> Result<Option<RelTables>> {
        let Some((table_h, table_w)) = &self.rel_pos else {
            return Ok(None);
        };
        match &self.gathered {
            Some(t) if (t.size, t.size) == (h, w) => Ok(Some(t.clone())),
            _ => Ok(Some(RelTables::new((h, w), (table_h, table_w))?)),
        }
    }

    /// Whether [`Attention::forward_grid_add_into`] can run: f32 CPU projections (and
    /// tables, which the fused kernel reads as f32).
    pub(crate) fn buffers_supported(&self) -> bool {
        [&self.qkv, &self.proj]
            .iter()
            .all(|l| l.weight_t().is_some() && l.bias().is_none_or(is_cpu_f32))
            && self
                .rel_pos
                .as_ref()
                .is_none_or(|(h, w)| is_cpu_f32(h) && is_cpu_f32(w))
    }

    /// The arithmetic of the `qkv` and `proj` products on the CPU ([`CpuMatmul`]); whether
    /// bf16 is on.
    pub fn set_cpu_matmul(&mut self, mode: CpuMatmul) -> Result<bool> {
        Ok(self.qkv.set_cpu_matmul(mode)? & self.proj.set_cpu_matmul(mode)?)
    }

    /// Attention over a `(B, H, W, C)` token grid in `window`×`window` windows (zero-padded
    /// to whole windows), or globally when `window` is 0: `(B, H, W, C)` → `(B, H, W, C)`.
    ///
    /// f32 on the CPU runs the fused kernel ([`segany_core::nn::fused_attention`]); CUDA with
    /// relative positions runs segany's kernels around the two products (`segany_core::nn::cuda`:
    /// `window_partition`, `rel_pos_qkv`, `merge_heads`); elsewhere this is
    /// [`window_partition`], [`Attention::forward`] and [`window_unpartition`].
    pub fn forward_grid(&self, x: &Tensor, window: usize) -> Result<Tensor> {
        self.forward_grid_inner(x, window, None)
    }

    /// `shortcut + forward_grid(x, window)`, the block's first residual connection, added in
    /// the output projection's bias pass on the CPU (the same values).
    pub fn forward_grid_add(&self, x: &Tensor, window: usize, shortcut: &Tensor) -> Result<Tensor> {
        self.forward_grid_inner(x, window, Some(shortcut))
    }

    /// The CPU f32 path of [`Attention::forward_grid_add`] on buffers the caller reuses:
    /// `y` holds the normalised tokens of `B` `h × w` grids (`(B·h·w, C)` row-major) and is
    /// overwritten with the attention's output before `proj`; `qkv` (at least `B·h·w·3C`
    /// values) is scratch; `out` receives `shortcut + proj(attention)`. The values are
    /// `forward_grid_add`'s.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward_grid_add_into(
        &self,
        y: &mut [f32],
        (b, h, w): (usize, usize, usize),
        window: usize,
        shortcut: &[f32],
        qkv: &mut [f32],
        out: &mut [f32],
    ) -> Result<()> {
        let rows = b * h * w;
        let c = y.len() / rows.max(1);
        let qkv = qkv
            .get_mut(..rows * 3 * c)
            .ok_or_else(|| candle_core::Error::msg("attention: qkv scratch too small"))?;
        self.qkv
            .forward_into(y, rows, Activation::Identity, None, qkv)?;
        let (geometry, rel) = self.fused_setup((b, h, w, c), window)?;
        let mut attend = |bias: Option<&[f32]>| {
            fused_attention_into(
                qkv,
                bias,
                rel.as_ref().map(|(a, b)| (a, b)),
                geometry,
                self.scale as f32,
                y,
            )
        };
        match self.qkv.bias() {
            Some(bias) => with_f32_values(bias, |bias| attend(Some(bias)))?,
            None => attend(None)?,
        }
        self.proj
            .forward_into(y, rows, Activation::Identity, Some(shortcut), out)
    }

    /// The fused kernel's geometry for `b` grids of `h × w` tokens of `c` channels, and the
    /// relative-position tables of its attention window (the window, or the whole grid).
    fn fused_setup(
        &self,
        (b, h, w, c): (usize, usize, usize, usize),
        window: usize,
    ) -> Result<(Geometry, Option<(Tensor, Tensor)>)> {
        let (wh, ww) = if window > 0 { (window, window) } else { (h, w) };
        let rel = self.rel_tables(wh, ww)?.map(|t| (t.rh, t.rw));
        let geometry = Geometry {
            batch: b,
            height: h,
            width: w,
            window,
            heads: self.num_heads,
            head_dim: c / self.num_heads,
            causal: false,
        };
        Ok((geometry, rel))
    }

    fn forward_grid_inner(
        &self,
        x: &Tensor,
        window: usize,
        shortcut: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, h, w, c) = x.dims4()?;
        if is_cpu_f32(x) {
            let (geometry, rel) = self.fused_setup((b, h, w, c), window)?;
            let qkv = self.qkv.forward(x)?.reshape((b, h * w, 3 * c))?;
            let out = fused_attention(
                &qkv,
                self.qkv.bias(),
                rel.as_ref().map(|(a, b)| (a, b)),
                geometry,
                self.scale as f32,
            )?;
            return match shortcut {
                Some(s) => self.proj.forward_add(&out, s),
                None => self.proj.forward(&out),
            };
        }
        #[cfg(feature = "cuda")]
        if segany_core::nn::cuda::supported(x) {
            if let Some(y) = self.cuda_grid(x, window, shortcut)? {
                return Ok(y);
            }
        }
        let y = if window == 0 {
            self.forward(x)?
        } else {
            let (win, pad_hw) = window_partition(x, window)?;
            let out = self.forward(&win)?;
            window_unpartition(&out, window, pad_hw, (h, w))?
        };
        match shortcut {
            Some(s) => s + y,
            None => Ok(y),
        }
    }

    /// [`Attention::forward_grid_inner`] on CUDA with relative positions (`None` without
    /// them, or with tables too long for the kernel's shared memory): the windows from one
    /// gather; the `qkv` projection, then the products' operands from two passes over it
    /// (q·scale, k with the terms' indicator columns and v; the decomposed terms); the heads
    /// merged back into unpadded tokens by another gather; then `proj` with the residual in its
    /// bias pass. The values of the composition below, up to the order of
    /// the terms' sums (and the scale applied in f32 rather than rounded to the dtype first).
    #[cfg(feature = "cuda")]
    fn cuda_grid(
        &self,
        x: &Tensor,
        window: usize,
        shortcut: Option<&Tensor>,
    ) -> Result<Option<Tensor>> {
        use segany_core::nn::cuda;
        let (b, h, w, c) = x.dims4()?;
        let (wh, ww) = if window == 0 {
            (h, w)
        } else {
            (window, window)
        };
        let Some(packed) = self.rel_tables(wh, ww)?.and_then(|t| t.packed) else {
            return Ok(None);
        };
        let windows = match window {
            0 => x.reshape((b, h * w, c))?,
            _ => cuda::window_partition(x, window)?.reshape(((), wh * ww, c))?,
        };
        let Some((qa, ka, v)) = cuda::rel_pos_qkv(
            &self.qkv.forward(&windows)?,
            &packed,
            (wh, ww),
            self.num_heads,
            self.scale as f32,
        )?
        else {
            return Ok(None);
        };
        let attn = segany_core::nn::softmax_last_dim(&qa.matmul(&ka.t()?)?)?;
        let out = cuda::merge_heads(&attn.matmul(&v)?, self.num_heads, (b, h, w), (wh, ww))?;
        match shortcut {
            Some(s) => self.proj.forward_add(&out, s),
            None => self.proj.forward(&out),
        }
        .map(Some)
    }

    /// Attention within each `(B, H, W, C)` window (the reference composition, any device):
    /// `(B, H, W, C)` → `(B, H, W, C)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, h, w, c) = x.dims4()?;
        let heads = self.num_heads;
        let hd = c / heads;
        let qkv = self.qkv.forward(x)?.reshape((b, h * w, 3 * c))?;
        let (q, k, v) = segany_core::nn::qkv_heads(&qkv, heads)?;
        let q_scaled = (&q * self.scale)?;
        let attn = match self.rel_tables(h, w)? {
            Some(t) => {
                let (terms_h, terms_w) = rel_pos_terms(&q, &t.rh, &t.rw, (h, w))?;
                if q.device().is_cpu() {
                    let logits = q_scaled.matmul(&k.t()?)?;
                    rel_pos_softmax(&logits, &terms_h, &terms_w)?
                } else {
                    // The terms inside the product: one batched product writes the biased
                    // logits, instead of two broadcast passes over them.
                    let keys = match t.keys {
                        Some(keys) => keys,
                        None => key_indicators(h, w, q.dtype(), q.device())?,
                    };
                    let terms = (&terms_h, &terms_w);
                    segany_core::nn::softmax_last_dim(&rel_pos_logits(
                        &q_scaled, &k, terms, &keys,
                    )?)?
                }
            }
            None => segany_core::nn::softmax_last_dim(&q_scaled.matmul(&k.t()?)?)?,
        };
        let out = attn
            .matmul(&v)?
            .reshape((b, heads, h, w, hd))?
            .permute((0, 2, 3, 1, 4))?
            .reshape((b, h, w, c))?;
        self.proj.forward(&out)
    }
}

#[cfg(test)]
mod fused_tests {
    use super::Attention;
    use crate::window::{window_partition, window_unpartition};
    use candle_core::{DType, Device, Result, Tensor};
    use candle_nn::{VarBuilder, VarMap};

    fn attention(dim: usize, heads: usize, rel_len: usize, bias: bool) -> Result<Attention> {
        let tensors = random_tensors(dim, heads, rel_len, bias)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        Attention::new(dim, heads, bias, true, rel_len, vb)
    }

    /// The layer's tensors, random (relative-position tables of `rel_len` rows).
    fn random_tensors(
        dim: usize,
        heads: usize,
        rel_len: usize,
        bias: bool,
    ) -> Result<std::collections::HashMap<String, Tensor>> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        Attention::new(dim, heads, bias, true, rel_len, vb)?;
        for var in varmap.all_vars() {
            var.set(&Tensor::randn(0f32, 0.5, var.shape(), &Device::Cpu)?)?;
        }
        // The layer is built after the weights are set (`Linear` copies its weight at build
        // time), from the tensors themselves (a VarMap cannot serve `get_unchecked`).
        let tensors = varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("varmap lock poisoned".into()))?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        Ok(tensors)
    }

    /// max |a − b| / max(1, max |b|): the inputs are random (unseeded) and the outputs reach
    /// tens, so an absolute bound would be flaky; f32 sums over 32 channels stay near 1e-6.
    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        let d: f32 = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar()?;
        let m: f32 = b.abs()?.flatten_all()?.max(0)?.to_scalar()?;
        Ok(d / m.max(1.0))
    }

    /// The plain candle composition: pad, partition, attention with materialised biased logits,
    /// unpartition (global attention when `window` is 0: the attention alone).
    fn composition(attn: &Attention, x: &Tensor, window: usize) -> Result<Tensor> {
        if window == 0 {
            return attn.forward(x);
        }
        let (_, h, w, _) = x.dims4()?;
        let (win, pad) = window_partition(x, window)?;
        window_unpartition(&attn.forward(&win)?, window, pad, (h, w))
    }

    /// The fused kernel against the composition, with padding in both directions.
    #[test]
    fn windowed_matches_composition() -> Result<()> {
        for (bias, (h, w)) in [(true, (5, 7)), (false, (6, 6)), (true, (2, 3))] {
            let attn = attention(32, 4, 5, bias)?;
            let x = Tensor::randn(0f32, 1.0, (2, h, w, 32), &Device::Cpu)?;
            let d = max_diff(&attn.forward_grid(&x, 3)?, &composition(&attn, &x, 3)?)?;
            assert!(d < 1e-5, "{h}×{w}: relative max diff {d}");
        }
        Ok(())
    }

    #[test]
    fn global_matches_composition() -> Result<()> {
        // Tables of 9 rows resized to 2·5 − 1 and 2·4 − 1.
        let attn = attention(16, 2, 9, true)?;
        let x = Tensor::randn(0f32, 1.0, (2, 5, 4, 16), &Device::Cpu)?;
        let d = max_diff(&attn.forward_grid(&x, 0)?, &attn.forward(&x)?)?;
        assert!(d < 1e-5, "relative max diff {d}");
        // A grid of over 1024 tokens (the kernel's path for many keys: items of 48 queries,
        // cutting across grid rows), tables resized to 2·33 − 1 and 2·34 − 1.
        let attn = attention(16, 2, 9, true)?;
        let x = Tensor::randn(0f32, 1.0, (2, 33, 34, 16), &Device::Cpu)?;
        let d = max_diff(&attn.forward_grid(&x, 0)?, &attn.forward(&x)?)?;
        assert!(d < 1e-5, "33×34 grid: relative max diff {d}");
        Ok(())
    }

    /// segany's CUDA kernels around the products (window gather, relative-position operands,
    /// head merge, residual in `proj`'s pass) against the candle composition on the CPU in
    /// f32, with padded windows and global grids (tables resized). f32 within 1e-5; f16 and
    /// bf16 within 1.5× the same dtype's composition on the GPU, plus 1e-3, of the CPU (the
    /// kernels round once where the composition rounds the scale and the terms separately).
    /// Without a GPU the test says so and passes.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_kernels_match_composition() -> Result<()> {
        let Ok(dev) = Device::new_cuda(0) else {
            println!("NOTICE: no CUDA device; cuda_kernels_match_composition compared nothing");
            return Ok(());
        };
        let cases = [
            (32, 4, 5, true, (5, 7), 3),
            (32, 4, 5, false, (6, 6), 3),
            (48, 3, 7, true, (9, 10), 4),
            (16, 2, 9, true, (5, 4), 0),
            (16, 2, 9, true, (33, 34), 0),
        ];
        for (dim, heads, rel_len, bias, (h, w), window) in cases {
            let tensors = random_tensors(dim, heads, rel_len, bias)?;
            let cpu = Attention::new(
                dim,
                heads,
                bias,
                true,
                rel_len,
                VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu),
            )?;
            let x = Tensor::randn(0f32, 1.0, (2, h, w, dim), &Device::Cpu)?;
            let shortcut = Tensor::randn(0f32, 1.0, (2, h, w, dim), &Device::Cpu)?;
            let reference = (composition(&cpu, &x, window)? + &shortcut)?;
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                let vb = VarBuilder::from_tensors(tensors.clone(), dtype, &dev);
                let gpu = Attention::new(dim, heads, bias, true, rel_len, vb)?;
                let (xd, sd) = (
                    x.to_dtype(dtype)?.to_device(&dev)?,
                    shortcut.to_dtype(dtype)?.to_device(&dev)?,
                );
                let got = gpu.forward_grid_add(&xd, window, &sd)?;
                let composed = (composition(&gpu, &xd, window)? + &sd)?;
                let host = |t: &Tensor| t.to_dtype(DType::F32)?.to_device(&Device::Cpu);
                let d = max_diff(&host(&got)?, &reference)?;
                let dc = max_diff(&host(&composed)?, &reference)?;
                println!("{dim}/{heads} {h}×{w} window {window} {dtype:?}: kernels {d:.2e}, composition {dc:.2e}");
                match dtype {
                    DType::F32 => assert!(d < 1e-5, "{h}×{w} f32: relative max diff {d}"),
                    _ => assert!(
                        d <= 1.5 * dc + 1e-3,
                        "{h}×{w} {dtype:?}: kernels {d} against the composition's {dc}"
                    ),
                }
            }
        }
        Ok(())
    }
}
