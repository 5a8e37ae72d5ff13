//! TinyViT's window attention on the CPU in one pass over the windows.
//!
//! The reference pads the token grid with zeros to whole windows, partitions it, runs
//! `LayerNorm → qkv` on every window token, splits the heads into copies, multiplies batched
//! `49×49` (or `196×196`) products, adds the attention biases, takes the softmax, multiplies by
//! the values, merges the heads, projects and crops. Here `LayerNorm → qkv` has run on the
//! unpadded grid; a padded token is a zero vector, whose `qkv` row (`pad_qkv`: the projection
//! of `LayerNorm(0)`) is the same for every padded position. Each work item (image, window)
//! gathers its rows, runs every head's two products in place on strided views, adds the biases
//! and the softmax in one vectorised pass, and returns the rows of its real tokens; the
//! projection then runs on the grid.

use rayon::prelude::*;
use segany_core::nn::{matmul_into, softmax_rows_in_place, MatRef};

/// Shape of one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowGrid {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub window: usize,
    pub heads: usize,
    pub key_dim: usize,
}

/// `qkv (B, H·W, heads·3·kd)` (per head `[q | k | v]`), `pad_qkv (heads·3·kd)`, `bias (heads,
/// n, n)` with `n = window²`, `scale` → the attention output `(B, H·W, heads·kd)` (heads side
/// by side), before the output projection.
pub(crate) fn window_attention(
    qkv: &[f32],
    pad_qkv: &[f32],
    bias: &[f32],
    g: WindowGrid,
    scale: f32,
) -> candle_core::Result<Vec<f32>> {
    let (ws, kd) = (g.window, g.key_dim);
    let (c, c3, n) = (g.heads * kd, 3 * g.heads * kd, ws * ws);
    let tokens = g.height * g.width;
    if qkv.len() != g.batch * tokens * c3 || pad_qkv.len() != c3 || bias.len() != g.heads * n * n {
        candle_core::bail!(
            "window attention: {} qkv values, {} padding values and {} biases for {g:?}",
            qkv.len(),
            pad_qkv.len(),
            bias.len()
        );
    }
    let (nh, nw) = (g.height.div_ceil(ws), g.width.div_ceil(ws));
    let windows: Vec<Vec<f32>> = (0..g.batch * nh * nw)
        .into_par_iter()
        .map(|item| {
            let (b, wy, wx) = (item / (nh * nw), item / nw % nh, item % nw);
            // The window's rows of qkv, padding rows from `pad_qkv`.
            let mut rows = vec![0f32; n * c3];
            for (t, row) in rows.chunks_exact_mut(c3).enumerate() {
                let (y, x) = (wy * ws + t / ws, wx * ws + t % ws);
                if y < g.height && x < g.width {
                    let at = (b * tokens + y * g.width + x) * c3;
                    row.copy_from_slice(&qkv[at..at + c3]);
                } else {
                    row.copy_from_slice(pad_qkv);
                }
            }
            let mut logits = vec![0f32; n * n];
            let mut out = vec![0f32; n * c];
            for h in 0..g.heads {
                let base = h * 3 * kd;
                let q = MatRef::new(&rows[base..], n, kd, c3, 1)?;
                let k = MatRef::new(&rows[base + kd..], n, kd, c3, 1)?;
                let v = MatRef::new(&rows[base + 2 * kd..], n, kd, c3, 1)?;
                matmul_into(&mut logits, n, q, k.t(), scale, false)?;
                for (l, &ab) in logits.iter_mut().zip(&bias[h * n * n..(h + 1) * n * n]) {
                    *l += ab;
                }
                softmax_rows_in_place(&mut logits, n);
                let p = MatRef::row_major(&logits, n, n)?;
                matmul_into(&mut out[h * kd..], c, p, v, 1.0, false)?;
            }
            Ok(out)
        })
        .collect::<candle_core::Result<_>>()?;
    let mut y = vec![0f32; g.batch * tokens * c];
    for (item, out) in windows.iter().enumerate() {
        let (b, wy, wx) = (item / (nh * nw), item / nw % nh, item % nw);
        for (t, row) in out.chunks_exact(c).enumerate() {
            let (yy, xx) = (wy * ws + t / ws, wx * ws + t % ws);
            if yy < g.height && xx < g.width {
                let at = (b * tokens + yy * g.width + xx) * c;
                y[at..at + c].copy_from_slice(row);
            }
        }
    }
    Ok(y)
}
