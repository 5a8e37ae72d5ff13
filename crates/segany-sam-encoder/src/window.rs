//! Non-overlapping window partition with zero padding, and its inverse.

use candle_core::{Result, Tensor};

/// Splits `(B, H, W, C)` into `(B·nw, ws, ws, C)` windows, zero-padding H and W up to multiples
/// of `ws`. Returns the windows and the padded `(Hp, Wp)`.
pub fn window_partition(x: &Tensor, ws: usize) -> Result<(Tensor, (usize, usize))> {
    let (b, h, w, c) = x.dims4()?;
    let pad_h = (ws - h % ws) % ws;
    let pad_w = (ws - w % ws) % ws;
    let x = if pad_h > 0 {
        x.pad_with_zeros(1, 0, pad_h)?
    } else {
        x.clone()
    };
    let x = if pad_w > 0 {
        x.pad_with_zeros(2, 0, pad_w)?
    } else {
        x
    };
    let (hp, wp) = (h + pad_h, w + pad_w);
    let windows = x
        .reshape(vec![b, hp / ws, ws, wp / ws, ws, c])?
        .permute(vec![0, 1, 3, 2, 4, 5])?
        .contiguous()?
        .reshape((b * (hp / ws) * (wp / ws), ws, ws, c))?;
    Ok((windows, (hp, wp)))
}

/// Reassembles windows from [`window_partition`] into `(B, H, W, C)`, dropping the padding.
pub fn window_unpartition(
    windows: &Tensor,
    ws: usize,
    pad_hw: (usize, usize),
    hw: (usize, usize),
) -> Result<Tensor> {
    let (hp, wp) = pad_hw;
    let (h, w) = hw;
    let (n, _, _, c) = windows.dims4()?;
    let b = n / ((hp / ws) * (wp / ws));
    let x = windows
        .reshape(vec![b, hp / ws, wp / ws, ws, ws, c])?
        .permute(vec![0, 1, 3, 2, 4, 5])?
        .contiguous()?
        .reshape((b, hp, wp, c))?;
    if hp > h || wp > w {
        x.narrow(1, 0, h)?.narrow(2, 0, w)?.contiguous()
    } else {
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_padding() -> Result<()> {
        let x = Tensor::arange(0f32, (2 * 5 * 6 * 3) as f32, &candle_core::Device::Cpu)?
            .reshape((2, 5, 6, 3))?;
        let (win, pad) = window_partition(&x, 4)?;
        assert_eq!(pad, (8, 8));
        assert_eq!(win.dims(), &[2 * 4, 4, 4, 3]);
        // Window (0, 1) of image 0 starts at row 0, column 4.
        let first: Vec<f32> = win.get(1)?.get(0)?.get(0)?.to_vec1()?;
        let expect: Vec<f32> = x.get(0)?.get(0)?.get(4)?.to_vec1()?;
        assert_eq!(first, expect);
        let back = window_unpartition(&win, 4, pad, (5, 6))?;
        let diff = (back - &x)?.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        Ok(())
    }
}
