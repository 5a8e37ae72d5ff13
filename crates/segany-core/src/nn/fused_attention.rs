//! Windowed and global attention with decomposed relative positions, fused on the CPU.
//!
//! Used by SAM's ViT blocks (windows, relative positions) and by CLIP's towers (global
//! attention over a `1 × N` grid, no relative positions).
//!
//! The reference pads the token grid to whole windows, cuts it into windows, runs the `qkv`
//! projection on every window token, materialises `(windows·heads, N, N)` logits, biases them,
//! takes their softmax, multiplies by the values and stitches the windows back. For ViT-B's
//! global blocks the logits alone are 12 × 4096² values (800 MB, written twice).
//!
//! Here the `qkv` projection has run on the unpadded grid. A padded token is a zero vector, so
//! its keys and values are the projection's bias, which is what this kernel uses for them;
//! padded queries are dropped by the reference, so they are not computed. Each work item
//! (image, window, head, and for global attention one band of grid rows) computes its logits
//! block, the relative-position terms `q·rel_h[i]`, `q·rel_w[j]`, the biased softmax (in the
//! reference's order, `(logit + rel_h) + rel_w`) and its share of `softmax · V`, dividing by
//! the softmax's sum after that product (`head_dim` instead of `N` divisions per query), and
//! writes the result straight into the `(B, H, W, C)` output. Items run in parallel; each
//! product is a serial gemm on views of the `qkv` buffer or of small gathered windows.

use super::disjoint::DisjointOut;
use super::matmul::{matmul_into, MatRef};
use super::scratch::Scratch as Spare;
use candle_core::{bail, DType, Result, Storage, Tensor};
use rayon::prelude::*;

use super::reduce::gemv_t;
use super::softmax::rel_softmax_unnormalised;
use super::transpose::{transpose_into, transpose_strided_into};

/// Shape of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    /// Images in the batch.
    pub batch: usize,
    /// Token grid height.
    pub height: usize,
    /// Token grid width.
    pub width: usize,
    /// Window side, or 0 for global attention over the whole grid.
    pub window: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Causal attention (global only): the query at grid index `t` (row-major) attends to the
    /// keys `0..=t` (CLIP's text tower; the reference adds a mask of −∞ above the diagonal).
    pub causal: bool,
}

impl Geometry {
    fn channels(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Attention window `(rows, cols)`: the window, or the whole grid.
    fn window_hw(&self) -> (usize, usize) {
        if self.window > 0 {
            (self.window, self.window)
        } else {
            (self.height, self.width)
        }
    }
}

/// Relative-position tables from `get_rel_pos` for the window, each `(q, k, hd)` table stored
/// as `(q, hd, ld)` (one transposed matrix per query coordinate, rows padded with zeros to
/// `ld`, a multiple of 16, for [`gemv_t`]): `rh (wh, hd, ld_h)`, `rw (ww, hd, ld_w)`.
struct RelPos<'a> {
    rh: &'a [f32],
    rw: &'a [f32],
    ld_h: usize,
    ld_w: usize,
}

/// Writes one item's `values` at `offset` of the shared output.
fn write(out: &DisjointOut, offset: usize, values: &[f32]) {
    // SAFETY: the items write disjoint `(token, head)` cells, and nothing reads the buffer
    // until the parallel loop has finished.
    let piece = unsafe { out.piece(offset, values.len()) };
    piece.copy_from_slice(values);
}

/// Per-thread scratch buffers.
#[derive(Default)]
struct Scratch {
    logits: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    out: Vec<f32>,
    th: Vec<f32>,
    tw: Vec<f32>,
    sums: Vec<f32>,
}

/// One block of queries against one window's keys: `q` rows (contiguous, `hd` wide) with
/// window coordinates `pos`, keys `k` and values `v` as `(Nk, hd)` views. Result in `s.out`.
#[allow(clippy::too_many_arguments)]
fn attend(
    q: &[f32],
    q_stride: usize,
    pos: &[(usize, usize)],
    k: MatRef,
    v: MatRef,
    rel: Option<&RelPos>,
    (wh, ww): (usize, usize),
    scale: f32,
    causal: bool,
    s: &mut Scratch,
) -> Result<()> {
    let (r, nk, hd) = (pos.len(), k.rows(), k.cols());
    s.logits.resize(r * nk, 0.0);
    s.out.resize(r * hd, 0.0);
    let qm = MatRef::new(q, r, hd, q_stride, 1)?;
    matmul_into(&mut s.logits, nk, qm, k.t(), scale, false)?;
    s.th.resize(wh, 0.0);
    s.tw.resize(ww, 0.0);
    s.sums.clear();
    for (row, (&(i, j), logits)) in pos.iter().zip(s.logits.chunks_exact_mut(nk)).enumerate() {
        let qr = &q[row * q_stride..row * q_stride + hd];
        let terms = match rel {
            Some(t) => {
                let rh = &t.rh[i * t.ld_h * hd..(i + 1) * t.ld_h * hd];
                let rw = &t.rw[j * t.ld_w * hd..(j + 1) * t.ld_w * hd];
                gemv_t(&mut s.th, qr, rh, t.ld_h);
                gemv_t(&mut s.tw, qr, rw, t.ld_w);
                Some((&s.th[..], &s.tw[..]))
            }
            None => None,
        };
        if causal {
            // The reference's additive mask: logit + (−∞) above the diagonal. (`exp` clamps
            // its input, so those weights come out ≈ 1e-38 rather than 0: no effect at f32
            // precision next to the row maximum's weight of 1.)
            let t = i * ww + j;
            logits[(t + 1).min(nk)..].fill(f32::NEG_INFINITY);
        }
        s.sums.push(rel_softmax_unnormalised(logits, terms));
    }
    let p = MatRef::row_major(&s.logits, r, nk)?;
    matmul_into(&mut s.out, hd, p, v, 1.0, false)?;
    // The softmax's division, on the `hd`-wide product rows instead of the `nk`-wide
    // probabilities.
    for (o, &sum) in s.out.chunks_exact_mut(hd).zip(&s.sums) {
        let inv = 1.0 / sum;
        for x in o {
            *x *= inv;
        }
    }
    Ok(())
}

/// `n` rounded up to a multiple of 16.
fn padded(n: usize) -> usize {
    n.div_ceil(16) * 16
}

fn cpu_f32(t: &Tensor, what: &str) -> Result<Vec<f32>> {
    if t.dtype() != DType::F32 {
        bail!("fused attention: {what} must be f32, found {:?}", t.dtype())
    }
    t.flatten_all()?.to_vec1()
}

/// Attention of ViT blocks on the CPU.
///
/// `qkv`: `(B, H·W, 3C)` f32, the `qkv` projection of the unpadded token grid; `qkv_bias`:
/// `(3C)` (the keys and values of padding tokens; `None` means zero); `rel`: `(rh, rw)` from
/// `get_rel_pos` for the attention window (`(wh, wh, hd)`, `(ww, ww, hd)`), or `None`.
/// Returns `(B, H, W, C)`, the attention output before the `proj` projection.
pub fn fused_attention(
    qkv: &Tensor,
    qkv_bias: Option<&Tensor>,
    rel: Option<(&Tensor, &Tensor)>,
    g: Geometry,
    scale: f32,
) -> Result<Tensor> {
    let out = run(qkv, qkv_bias, rel, g, scale, None)?;
    let c = g.channels();
    out.reshape((g.batch, g.height, g.width, c))
}

/// Global attention of the first `queries` tokens (row-major grid order) against every token:
/// `(B, queries, C)`, the rows [`fused_attention`] would return for them, computed alone (a
/// post-norm encoder's last layer whose later rows nobody reads). Global only (`g.window` 0).
pub fn fused_attention_first(
    qkv: &Tensor,
    rel: Option<(&Tensor, &Tensor)>,
    g: Geometry,
    scale: f32,
    queries: usize,
) -> Result<Tensor> {
    if g.window > 0 {
        bail!(
            "fused attention: a subset of queries needs global attention (window {})",
            g.window
        )
    }
    if queries > g.height * g.width {
        bail!(
            "fused attention: {queries} queries of a {}×{} grid",
            g.height,
            g.width
        )
    }
    run(qkv, None, rel, g, scale, Some(queries))
}

/// [`fused_attention`] on plain slices, into a caller's buffer: `qkv` holds the `(B, H·W, 3C)`
/// projection row-major, `qkv_bias` its `3C` bias (`None`: zero), and `out` receives the
/// `(B, H, W, C)` result. For a model that runs its layers through buffers it reuses (see
/// [`super::Linear::forward_into`]); the values are [`fused_attention`]'s.
pub fn fused_attention_into(
    qkv: &[f32],
    qkv_bias: Option<&[f32]>,
    rel: Option<(&Tensor, &Tensor)>,
    g: Geometry,
    scale: f32,
    out: &mut [f32],
) -> Result<()> {
    let (c, n) = (g.channels(), g.height * g.width);
    if qkv.len() != g.batch * n * 3 * c || out.len() != g.batch * n * c {
        bail!(
            "fused attention: {} qkv and {} output values for {} images of {n} tokens and {c} channels",
            qkv.len(),
            out.len(),
            g.batch
        )
    }
    let zeros;
    let bias = match qkv_bias {
        Some(b) => b,
        None => {
            zeros = vec![0f32; 3 * c];
            &zeros
        }
    };
    body(qkv, bias, rel, g, scale, n, out)
}

/// The shared body: every token as a query, or the first `queries` ones (global only);
/// `(B, queries or N, C)`.
fn run(
    qkv: &Tensor,
    qkv_bias: Option<&Tensor>,
    rel: Option<(&Tensor, &Tensor)>,
    g: Geometry,
    scale: f32,
    queries: Option<usize>,
) -> Result<Tensor> {
    let (c, n) = (g.channels(), g.height * g.width);
    if qkv.dims() != [g.batch, n, 3 * c] {
        bail!(
            "fused attention: qkv {:?}, expected {:?}",
            qkv.dims(),
            [g.batch, n, 3 * c]
        )
    }
    let bias = match qkv_bias {
        Some(b) => cpu_f32(b, "qkv bias")?,
        None => vec![0f32; 3 * c],
    };
    let qkv = qkv.contiguous()?;
    let (storage, layout) = qkv.storage_and_layout();
    let data = match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(candle_core::CpuStorage::F32(v)), Some((a, b))) => &v[a..b],
        _ => bail!("fused attention: qkv must be a contiguous f32 CPU tensor"),
    };
    let rows = queries.unwrap_or(n);
    let mut out = vec![0f32; g.batch * rows * c];
    body(data, &bias, rel, g, scale, rows, &mut out)?;
    drop(storage);
    Tensor::from_vec(out, (g.batch, rows, c), qkv.device())
}

/// Checks the bias and tables, lays the tables out for [`gemv_t`] and runs the items:
/// `data` `(B, N, 3C)`, `out` `(B, queries, C)`.
fn body(
    data: &[f32],
    bias: &[f32],
    rel: Option<(&Tensor, &Tensor)>,
    g: Geometry,
    scale: f32,
    queries: usize,
    out: &mut [f32],
) -> Result<()> {
    let (c, hd) = (g.channels(), g.head_dim);
    let (wh, ww) = g.window_hw();
    let tables = match rel {
        Some((rh, rw)) => {
            if rh.dims() != [wh, wh, hd] || rw.dims() != [ww, ww, hd] {
                bail!(
                    "fused attention: rel-pos {:?} / {:?} for a {wh}×{ww} window",
                    rh.dims(),
                    rw.dims()
                )
            }
            let per_query_transposed = |t: &Tensor, what: &str, side: usize| -> Result<Vec<f32>> {
                let v = cpu_f32(t, what)?;
                let ld = padded(side);
                let mut out = vec![0f32; side * hd * ld];
                let mut block = vec![0f32; side * hd];
                for (src, dst) in v.chunks_exact(side * hd).zip(out.chunks_exact_mut(hd * ld)) {
                    transpose_into(src, &mut block, side, hd);
                    for (d, row) in block.chunks_exact(side).zip(dst.chunks_exact_mut(ld)) {
                        row[..side].copy_from_slice(d);
                    }
                }
                Ok(out)
            };
            Some((
                per_query_transposed(rh, "rel_pos_h", wh)?,
                per_query_transposed(rw, "rel_pos_w", ww)?,
            ))
        }
        None => None,
    };
    let rel = tables.as_ref().map(|(rh, rw)| RelPos {
        rh,
        rw,
        ld_h: padded(wh),
        ld_w: padded(ww),
    });
    if bias.len() != 3 * c {
        bail!(
            "fused attention: qkv bias has {} values, expected {}",
            bias.len(),
            3 * c
        )
    }
    if g.causal && g.window > 0 {
        bail!(
            "fused attention: causal attention is global only (window {})",
            g.window
        )
    }
    let shared = DisjointOut::new(out);
    if g.window == 0 {
        global(data, &g, rel.as_ref(), scale, &shared, queries)
    } else {
        windowed(data, bias, &g, rel.as_ref(), scale, &shared)
    }
}

/// Queries per global-attention item: enough that packing the keys and values for each
/// item's two products stays a small share of the work. (Whole grid rows: splitting CLIP's
/// 1 × 577 grid into runs of 256 queries was 15% slower, from packing the keys three times.)
const GLOBAL_QUERIES: usize = 256;

/// Global attention of the first `queries` tokens: one item per (image, head, band of grid
/// rows holding queries); keys and values are read in place. The output holds `queries` rows
/// per image.
fn global(
    data: &[f32],
    g: &Geometry,
    rel: Option<&RelPos>,
    scale: f32,
    out: &DisjointOut,
    queries: usize,
) -> Result<()> {
    let (c, hd, n, w) = (g.channels(), g.head_dim, g.height * g.width, g.width.max(1));
    let unpacked = !g.causal && n >= UNPACKED_MIN_KEYS;
    let per_item = if unpacked {
        UNPACKED_QUERIES
    } else {
        (GLOBAL_QUERIES / w).clamp(1, g.height.max(1)) * w
    };
    let bands = queries.div_ceil(per_item);
    let items = g.batch * g.heads * bands;
    let keys_t = if unpacked {
        let mut kt = Spare::take(g.batch * g.heads * hd * n);
        kt.par_chunks_mut(hd * n).enumerate().for_each(|(bh, dst)| {
            let (b, head) = (bh / g.heads, bh % g.heads);
            let src = &data[b * n * 3 * c + c + head * hd..];
            transpose_strided_into(src, 3 * c, dst, n, hd);
        });
        Some(kt)
    } else {
        None
    };
    (0..items)
        .into_par_iter()
        .try_for_each_init(Scratch::default, |s, item| {
            let t0 = (item % bands) * per_item;
            let t1 = (t0 + per_item).min(queries);
            let head = (item / bands) % g.heads;
            let b = item / (bands * g.heads);
            let img = &data[b * n * 3 * c..(b + 1) * n * 3 * c];
            let k = match &keys_t {
                Some(kt) => {
                    let bh = b * g.heads + head;
                    MatRef::row_major(&kt[bh * hd * n..(bh + 1) * hd * n], hd, n)?.t()
                }
                None => MatRef::new(&img[c + head * hd..], n, hd, 3 * c, 1)?,
            };
            let v = MatRef::new(&img[2 * c + head * hd..], n, hd, 3 * c, 1)?;
            let q = &img[t0 * 3 * c + head * hd..];
            let pos: Vec<(usize, usize)> = (t0..t1).map(|t| (t / w, t % w)).collect();
            attend(
                q,
                3 * c,
                &pos,
                k,
                v,
                rel,
                (g.height, g.width),
                scale,
                g.causal,
                s,
            )?;
            let first = b * queries + t0;
            for (t, o) in s.out.chunks_exact(hd).enumerate() {
                write(out, (first + t) * c + head * hd, o);
            }
            Ok(())
        })
}

/// Keys from which global attention runs in items of [`UNPACKED_QUERIES`] queries.
const UNPACKED_MIN_KEYS: usize = 1024;
/// Queries per item of global attention over many keys: at most 8 of the gemm crate's 6-wide
/// AVX-512 register tiles, below which it multiplies a column-major left operand in place
/// instead of packing it for every call (`gemm-common`'s single-thread packing threshold;
/// where its tiles are narrower it packs, which is only slower). With each head's keys
/// transposed once, `(hd, N)`, neither product of an item packs its keys or values: for
/// SAM's global blocks each band of 256 queries packed 4096 keys and values (a global block
/// on 2 Zen 4 cores 337 → 320 ms, packing 13% of it before).
const UNPACKED_QUERIES: usize = 48;

/// Windowed attention: one item per (image, window, head); the window's queries, keys and
/// values are gathered, with the bias for keys and values of padding tokens.
fn windowed(
    data: &[f32],
    bias: &[f32],
    g: &Geometry,
    rel: Option<&RelPos>,
    scale: f32,
    out: &DisjointOut,
) -> Result<()> {
    let (c, hd, n, ws) = (g.channels(), g.head_dim, g.height * g.width, g.window);
    let (nwh, nww) = (g.height.div_ceil(ws), g.width.div_ceil(ws));
    let items = g.batch * nwh * nww * g.heads;
    (0..items)
        .into_par_iter()
        .try_for_each_init(Scratch::default, |s, item| {
            let head = item % g.heads;
            let wx = (item / g.heads) % nww;
            let wy = (item / (g.heads * nww)) % nwh;
            let b = item / (g.heads * nww * nwh);
            let (y0, x0) = (wy * ws, wx * ws);
            let (vh, vw) = (ws.min(g.height - y0), ws.min(g.width - x0));
            let token = |i: usize, j: usize| &data[(b * n + (y0 + i) * g.width + x0 + j) * 3 * c..];
            let (qo, ko, vo) = (head * hd, c + head * hd, 2 * c + head * hd);
            s.q.clear();
            s.k.clear();
            s.v.clear();
            let mut pos = Vec::with_capacity(vh * vw);
            for i in 0..ws {
                for j in 0..ws {
                    let src = if i < vh && j < vw {
                        let t = token(i, j);
                        s.q.extend_from_slice(&t[qo..qo + hd]);
                        pos.push((i, j));
                        t
                    } else {
                        bias
                    };
                    s.k.extend_from_slice(&src[ko..ko + hd]);
                    s.v.extend_from_slice(&src[vo..vo + hd]);
                }
            }
            let (q, k, v) = (
                std::mem::take(&mut s.q),
                std::mem::take(&mut s.k),
                std::mem::take(&mut s.v),
            );
            let km = MatRef::row_major(&k, ws * ws, hd)?;
            let vm = MatRef::row_major(&v, ws * ws, hd)?;
            attend(&q, hd, &pos, km, vm, rel, (ws, ws), scale, false, s)?;
            for (&(i, j), o) in pos.iter().zip(s.out.chunks_exact(hd)) {
                write(
                    out,
                    (b * n + (y0 + i) * g.width + x0 + j) * c + head * hd,
                    o,
                );
            }
            (s.q, s.k, s.v) = (q, k, v);
            Ok(())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Plain global attention `softmax(q·kᵀ·scale [+ causal mask])·v` over `(B, N, 3C)`
    /// packed q/k/v.
    fn reference(qkv: &Tensor, heads: usize, scale: f64, causal: bool) -> Result<Tensor> {
        let (b, n, c3) = qkv.dims3()?;
        let c = c3 / 3;
        let qkv = qkv
            .reshape((b, n, 3, heads, c / heads))?
            .permute((2, 0, 3, 1, 4))?;
        let (q, k, v) = (
            qkv.get(0)?.contiguous()?,
            qkv.get(1)?.contiguous()?,
            qkv.get(2)?.contiguous()?,
        );
        let logits = (q * scale)?.matmul(&k.t()?)?;
        let logits = if causal {
            let mask: Vec<f32> = (0..n)
                .flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            logits.broadcast_add(&Tensor::from_vec(mask, (n, n), qkv.device())?)?
        } else {
            logits
        };
        let p = crate::nn::softmax_last_dim(&logits)?;
        p.matmul(&v)?.transpose(1, 2)?.reshape((b, n, c))
    }

    /// Global attention without relative positions (CLIP's case), plain and causal (CLIP's
    /// text tower), against the composition, on a `1 × N` grid with more queries than one
    /// work item takes.
    #[test]
    fn global_without_rel_pos_matches_composition() -> Result<()> {
        let (b, n, heads, hd) = (2, 300, 3, 8);
        let c = heads * hd;
        let qkv = Tensor::randn(0f32, 1.0, (b, n, 3 * c), &Device::Cpu)?;
        let plain = Geometry {
            batch: b,
            height: 1,
            width: n,
            window: 0,
            heads,
            head_dim: hd,
            causal: false,
        };
        for causal in [false, true] {
            let g = Geometry { causal, ..plain };
            let scale = (hd as f64).powf(-0.5);
            let ours = fused_attention(&qkv, None, None, g, scale as f32)?.reshape((b, n, c))?;
            let d: f32 = (ours - reference(&qkv, heads, scale, causal)?)?
                .abs()?
                .max_all()?
                .to_scalar()?;
            assert!(d < 1e-5, "causal {causal}: max abs diff {d}");
        }
        // The first query attends to itself alone: its output is its own value.
        let g = Geometry {
            causal: true,
            ..plain
        };
        let ours = fused_attention(&qkv, None, None, g, 0.3)?.reshape((b, n, c))?;
        let first = ours.narrow(1, 0, 1)?;
        let v0 = qkv.narrow(1, 0, 1)?.narrow(2, 2 * c, c)?;
        let d: f32 = (first - v0)?.abs()?.max_all()?.to_scalar()?;
        assert!(d < 1e-6, "first causal query: {d}");
        let windowed = Geometry { window: 2, ..g };
        assert!(fused_attention(&qkv, None, None, windowed, 0.3).is_err());
        Ok(())
    }

    /// Over 1024 keys and more, items of 48 queries read each head's transposed keys (no
    /// packing): plain, the first queries alone, and causal (which keeps the banded path),
    /// against the composition, with a last item shorter than the others.
    #[test]
    fn global_over_many_keys_matches_composition() -> Result<()> {
        let (b, n, heads, hd) = (2, 1100, 2, 8);
        assert!(n >= UNPACKED_MIN_KEYS && n % UNPACKED_QUERIES != 0);
        let c = heads * hd;
        let qkv = Tensor::randn(0f32, 1.0, (b, n, 3 * c), &Device::Cpu)?;
        let scale = (hd as f64).powf(-0.5);
        for causal in [false, true] {
            let g = Geometry {
                batch: b,
                height: 1,
                width: n,
                window: 0,
                heads,
                head_dim: hd,
                causal,
            };
            let expected = reference(&qkv, heads, scale, causal)?;
            let ours = fused_attention(&qkv, None, None, g, scale as f32)?.reshape((b, n, c))?;
            let d: f32 = (ours - &expected)?.abs()?.max_all()?.to_scalar()?;
            assert!(d < 1e-5, "causal {causal}: max abs diff {d}");
            let first = fused_attention_first(&qkv, None, g, scale as f32, 100)?;
            let d: f32 = (first - expected.narrow(1, 0, 100)?)?
                .abs()?
                .max_all()?
                .to_scalar()?;
            assert!(d < 1e-5, "causal {causal}, first 100: max abs diff {d}");
        }
        Ok(())
    }

    /// The first queries alone (plain, causal, and with relative positions on a 2-D grid, runs
    /// of queries cut across grid rows) equal the same rows of the whole attention; a windowed
    /// geometry or more queries than tokens is an error.
    #[test]
    fn first_queries_equal_the_full_rows() -> Result<()> {
        let (b, h, w, heads, hd) = (2, 7, 45, 2, 8);
        let (n, c) = (h * w, heads * hd);
        let values = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 * 3.4 - 1.7)
                .collect()
        };
        let qkv = Tensor::from_vec(values(b * n * 3 * c, 1), (b, n, 3 * c), &Device::Cpu)?;
        let rh = Tensor::from_vec(values(h * h * hd, 2), (h, h, hd), &Device::Cpu)?;
        let rw = Tensor::from_vec(values(w * w * hd, 3), (w, w, hd), &Device::Cpu)?;
        let g = Geometry {
            batch: b,
            height: h,
            width: w,
            window: 0,
            heads,
            head_dim: hd,
            causal: false,
        };
        let cases = [
            (
                Geometry {
                    height: 1,
                    width: n,
                    ..g
                },
                None,
            ),
            (
                Geometry {
                    height: 1,
                    width: n,
                    causal: true,
                    ..g
                },
                None,
            ),
            (g, Some((&rh, &rw))),
        ];
        for (geometry, rel) in cases {
            let full = fused_attention(&qkv, None, rel, geometry, 0.3)?.reshape((b, n, c))?;
            for queries in [1, 129, 256, 300] {
                let first = fused_attention_first(&qkv, rel, geometry, 0.3, queries)?;
                assert_eq!(first.dims(), [b, queries, c]);
                let d: f32 = (first - full.narrow(1, 0, queries)?)?
                    .abs()?
                    .max_all()?
                    .to_scalar()?;
                assert!(
                    d < 1e-6,
                    "{queries} queries of {geometry:?}: max abs diff {d}"
                );
            }
        }
        assert!(fused_attention_first(&qkv, None, Geometry { window: 5, ..g }, 0.3, 4).is_err());
        assert!(fused_attention_first(&qkv, None, g, 0.3, n + 1).is_err());
        Ok(())
    }
}
