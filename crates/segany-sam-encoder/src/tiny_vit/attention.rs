//! TinyViT window attention with learned attention biases (LeViT style).

use super::window_attention::{window_attention, WindowGrid};
use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use segany_core::nn::{is_cpu_f32, layer_norm, linear, with_f32_values, LayerNorm, Linear};

/// `attention_bias_idxs` for a `rows`×`cols` window: entry `(i, j)` is the index of the offset
/// `(|Δrow|, |Δcol|)` between tokens `i` and `j` (row-major), offsets numbered in the order
/// they are first met, exactly as the reference builds its buffer. Returns the `N·N` indices
/// (row-major, `N = rows·cols`) and the number of distinct offsets.
///
/// ```
/// let (idx, n) = segany_sam_encoder::tiny_vit::attention_bias_idxs(2, 2);
/// assert_eq!(n, 4);
/// assert_eq!(idx, vec![0, 1, 2, 3, 1, 0, 3, 2, 2, 3, 0, 1, 3, 2, 1, 0]);
/// ```
pub fn attention_bias_idxs(rows: usize, cols: usize) -> (Vec<u32>, usize) {
    let points: Vec<(usize, usize)> = (0..rows)
        .flat_map(|r| (0..cols).map(move |c| (r, c)))
        .collect();
    let mut offsets = std::collections::HashMap::new();
    let mut idxs = Vec::with_capacity(points.len() * points.len());
    for &(r1, c1) in &points {
        for &(r2, c2) in &points {
            let next = offsets.len() as u32;
            idxs.push(
                *offsets
                    .entry((r1.abs_diff(r2), c1.abs_diff(c2)))
                    .or_insert(next),
            );
        }
    }
    (idxs, offsets.len())
}

/// Attention over windows of tokens `(B·windows, N, C)` (`attn.norm`, `attn.qkv`, `attn.proj`,
/// `attn.attention_biases`): LayerNorm, per-head interleaved q/k/v, `softmax(q·kᵀ·scale + ab)`
/// with `ab[h, i, j] = attention_biases[h, idx(i, j)]`.
#[derive(Debug, Clone)]
pub struct TinyAttention {
    norm: LayerNorm,
    qkv: Linear,
    proj: Linear,
    bias: Tensor,
    /// `(heads, n, n)` host copy of `bias` for the CPU kernel (f32 models on the CPU).
    bias_host: Option<Vec<f32>>,
    window: usize,
    num_heads: usize,
    key_dim: usize,
    scale: f64,
}

impl TinyAttention {
    /// Loads the layer for `window`×`window` windows of `dim`-wide tokens. A stored
    /// `attention_bias_idxs` buffer is checked against the computed one.
    pub fn new(
        dim: usize,
        num_heads: usize,
        window: usize,
        ln_eps: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        let key_dim = dim / num_heads;
        let norm = layer_norm(dim, ln_eps, vb.pp("norm"))?;
        let qkv = linear(dim, 3 * dim, vb.pp("qkv"))?;
        let proj = linear(dim, dim, vb.pp("proj"))?;
        let (idxs, n_offsets) = attention_bias_idxs(window, window);
        let biases = vb.get((num_heads, n_offsets), "attention_biases")?;
        let n = window * window;
        if vb.contains_tensor("attention_bias_idxs") {
            let stored = vb.get_unchecked_dtype("attention_bias_idxs", DType::F32)?;
            let ok = stored.dims() == [n, n]
                && stored
                    .flatten_all()?
                    .to_vec1::<f32>()?
                    .iter()
                    .zip(&idxs)
                    .all(|(&a, &b)| a == b as f32);
            if !ok {
                candle_core::bail!(
                    "{}.attention_bias_idxs: stored buffer {:?} differs from the offsets of a {window}×{window} window",
                    vb.prefix(),
                    stored.dims()
                );
            }
        }
        let idx = Tensor::from_vec(idxs, n * n, biases.device())?;
        let bias = biases
            .index_select(&idx, 1)?
            .reshape((1, num_heads, n, n))?;
        let bias_host = if is_cpu_f32(&bias) {
            Some(bias.flatten_all()?.to_vec1()?)
        } else {
            None
        };
        Ok(Self {
            norm,
            qkv,
            proj,
            bias,
            bias_host,
            window,
            num_heads,
            key_dim,
            scale: (key_dim as f64).powf(-0.5),
        })
    }
}

impl TinyAttention {
    /// `x + attention(x)` over the `window`×`window` windows of the `h`×`w` token grid
    /// `x (B, H·W, C)` (zero-padded bottom/right, the padding cropped), on the CPU in f32 with
    /// a fused windowed-attention kernel; `None` elsewhere (the caller partitions and uses `forward`).
    pub fn forward_grid_add(&self, x: &Tensor, h: usize, w: usize) -> Result<Option<Tensor>> {
        let Some(bias) = &self.bias_host else {
            return Ok(None);
        };
        if !is_cpu_f32(x) {
            return Ok(None);
        }
        let (b, l, c) = x.dims3()?;
        if l != h * w {
            candle_core::bail!("TinyViT attention: {l} tokens do not form a {h}×{w} grid");
        }
        let qkv = self.qkv.forward(&self.norm.forward(x)?)?;
        // A zero-padded token's row: the projection of LayerNorm(0).
        let zero = Tensor::zeros((1, 1, c), DType::F32, x.device())?;
        let pad = self.qkv.forward(&self.norm.forward(&zero)?)?;
        let g = WindowGrid {
            batch: b,
            height: h,
            width: w,
            window: self.window,
            heads: self.num_heads,
            key_dim: self.key_dim,
        };
        let y = with_f32_values(&qkv, |q| {
            with_f32_values(&pad, |p| window_attention(q, p, bias, g, self.scale as f32))
        })?;
        let y = Tensor::from_vec(y, (b, l, c), x.device())?;
        Ok(Some(self.proj.forward_add(&y, x)?))
    }
}

impl Module for TinyAttention {
    /// `(B, N, C)` → `(B, N, C)`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let (h, kd) = (self.num_heads, self.key_dim);
        // (B, N, heads, [q | k | v]) → three (B, heads, N, kd).
        // Linear layers on (B·N, C): one large matmul instead of B small ones.
        let xn = self.norm.forward(x)?.reshape((b * n, c))?;
        let qkv = self.qkv.forward(&xn)?.reshape((b, n, h, 3 * kd))?;
        let part = |i: usize| {
            qkv.narrow(D::Minus1, i * kd, kd)?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let attn = (q.matmul(&k.transpose(2, 3)?)? * self.scale)?.broadcast_add(&self.bias)?;
        let attn = segany_core::nn::softmax_last_dim(&attn)?;
        let y = attn.matmul(&v)?.transpose(1, 2)?.reshape((b * n, c))?;
        self.proj.forward(&y)?.reshape((b, n, c))
    }
}
