//! 1×1 convolutions on the CPU as one product per image, with the bias, an optional residual
//! and an optional GELU applied in one pass over each output channel.
//!
//! At TinyViT's larger maps a matmul followed by separate bias, residual and GELU operations
//! spends most of its time allocating and streaming those maps. Here the product writes the
//! `(C_out, H·W)` map once and every channel row (one plane, in cache) gets its epilogue right
//! away. (MBConv blocks run their three convolutions together in bands of rows instead, see
//! `mbconv_bands`; this serves patch merging and the layer-by-layer path.)

use candle_core::{Device, Result, Tensor};
use rayon::prelude::*;
use segany_core::nn::{gelu_erf_in_place, matmul_into, with_f32_values, MatRef};

/// A 1×1 convolution's folded weights `(C_out, C_in)` and bias `(C_out)`.
pub(crate) type Pointwise<'a> = (&'a [f32], &'a [f32]);

/// The epilogue of one output channel's row: `row ← act(row + bias [+ residual])`, exact GELU
/// as `act` when `gelu`.
pub(crate) fn bias_epilogue(row: &mut [f32], bias: f32, residual: Option<&[f32]>, gelu: bool) {
    match residual {
        Some(r) => row.iter_mut().zip(r).for_each(|(v, &r)| *v += bias + r),
        None => row.iter_mut().for_each(|v| *v += bias),
    }
    if gelu {
        gelu_erf_in_place(row);
    }
}

/// `act(W·x + b [+ residual])` for `x (B, C_in, H, W)` f32 on the CPU, `w (C_out, C_in)`
/// row-major and `bias (C_out)`; `residual` has the output's shape `(B, C_out, H, W)`; `act`
/// is exact GELU when `gelu`.
pub(crate) fn pointwise_conv(
    x: &Tensor,
    (w, bias): Pointwise,
    residual: Option<&Tensor>,
    gelu: bool,
) -> Result<Tensor> {
    let (b, cin, h, wd) = x.dims4()?;
    let cout = bias.len();
    if w.len() != cout * cin {
        candle_core::bail!(
            "1×1 convolution: {} weights for {cin} → {cout} channels",
            w.len()
        );
    }
    if let Some(r) = residual.filter(|r| r.dims() != [b, cout, h, wd]) {
        candle_core::bail!(
            "1×1 convolution: residual {:?}, expected {:?}",
            r.dims(),
            [b, cout, h, wd]
        );
    }
    let hw = h * wd;
    let mut out = vec![0f32; b * cout * hw];
    with_f32_values(x, |xv| {
        for (img, dst) in xv
            .chunks_exact(cin * hw)
            .zip(out.chunks_exact_mut(cout * hw))
        {
            matmul_into(
                dst,
                hw,
                MatRef::row_major(w, cout, cin)?,
                MatRef::row_major(img, cin, hw)?,
                1.0,
                true,
            )?;
        }
        Ok::<_, candle_core::Error>(())
    })?;
    match residual {
        Some(r) => with_f32_values(r, |rv| {
            out.par_chunks_mut(hw)
                .zip(rv.par_chunks(hw))
                .enumerate()
                .for_each(|(i, (row, res))| bias_epilogue(row, bias[i % cout], Some(res), gelu));
            Ok::<_, candle_core::Error>(())
        })?,
        None => out
            .par_chunks_mut(hw)
            .enumerate()
            .for_each(|(i, row)| bias_epilogue(row, bias[i % cout], None, gelu)),
    }
    Tensor::from_vec(out, (b, cout, h, wd), &Device::Cpu)
}
