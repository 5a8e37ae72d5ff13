//! Vectorisable gate functions (`σ`, `tanh` on core's polynomial [`exp`]) and the head's
//! `tanh(visual) ⊙ tanh(sentence)` fusion built on them.

use candle_core::{Device, Result, Tensor};
use segany_core::nn::{exp, is_cpu_f32, with_f32_values};

/// `1 / (1 + e⁻ˣ)` on the vectorisable [`exp`] (relative error < 3e-7).
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `1 − 2 / (e²ˣ + 1)` on the vectorisable [`exp`]: within 2e-7 of `tanh` (absolute; the
/// state it feeds is a sum of such values), ±1 exactly for large `|x|`.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

segany_core::avx2_dispatch! {
    /// `x ← tanh(x) · t` element by element (`t` as long as `x`).
    fn tanh_times(x: &mut [f32], t: &[f32]) => tanh_times_loop
}

#[inline(always)]
fn tanh_times_loop(x: &mut [f32], t: &[f32]) {
    for (v, &t) in x.iter_mut().zip(t) {
        *v = tanh(*v) * t;
    }
}

/// `tanh(visual) ⊙ tanh(sentence)`: `visual (B, N, C)`, `sentence (B, C)` broadcast over the
/// `N` rows. On the CPU in f32 one vectorised pass (tanh within 3e-7 of the exact one);
/// elsewhere candle's operations.
pub(crate) fn tanh_fusion(visual: &Tensor, sentence: &Tensor) -> Result<Tensor> {
    if !is_cpu_f32(visual) {
        return visual
            .tanh()?
            .broadcast_mul(&sentence.tanh()?.unsqueeze(1)?);
    }
    let (b, n, c) = visual.dims3()?;
    if sentence.dims() != [b, c] {
        candle_core::bail!(
            "sentence vectors are {:?}, expected ({b}, {c})",
            sentence.dims()
        );
    }
    let mut out = with_f32_values(visual, |v| Ok::<_, candle_core::Error>(v.to_vec()))?;
    let gain: Vec<f32> = with_f32_values(sentence, |s| {
        Ok::<_, candle_core::Error>(s.iter().map(|&x| tanh(x)).collect())
    })?;
    for (sample, g) in out.chunks_exact_mut(n * c).zip(gain.chunks_exact(c)) {
        for row in sample.chunks_exact_mut(c) {
            tanh_times(row, g);
        }
    }
    Tensor::from_vec(out, (b, n, c), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    /// The gate functions against f64 over the range a cell meets, and at the extremes.
    #[test]
    fn sigmoid_and_tanh_are_accurate() {
        let mut worst = (0f64, 0f64);
        for i in -20_000..=20_000 {
            let x = i as f32 * 1e-3;
            let s = 1.0 / (1.0 + (-(x as f64)).exp());
            worst.0 = worst.0.max((sigmoid(x) as f64 - s).abs());
            worst.1 = worst.1.max((tanh(x) as f64 - (x as f64).tanh()).abs());
        }
        assert!(
            worst.0 < 1e-7 && worst.1 < 3e-7,
            "sigmoid {:e}, tanh {:e}",
            worst.0,
            worst.1
        );
        assert_eq!((tanh(100.0), tanh(-100.0)), (1.0, -1.0));
        assert_eq!((sigmoid(200.0), sigmoid(-200.0) < 1e-30), (1.0, true));
    }

    /// The fusion against candle's `tanh` composition, including saturated values.
    #[test]
    fn fusion_matches_the_composition() -> Result<()> {
        let dev = Device::Cpu;
        let (b, n, c) = (2, 5, 37);
        let v: Vec<f32> = (0..b * n * c)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.09)
            .collect();
        let s: Vec<f32> = (0..b * c)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) * 0.3)
            .collect();
        let v = Tensor::from_vec(v, (b, n, c), &dev)?;
        let s = Tensor::from_vec(s, (b, c), &dev)?;
        let want = v
            .to_dtype(DType::F64)?
            .tanh()?
            .broadcast_mul(&s.to_dtype(DType::F64)?.tanh()?.unsqueeze(1)?)?;
        let got = tanh_fusion(&v, &s)?.to_dtype(DType::F64)?;
        let worst = (got - &want)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(worst < 5e-7, "max |Δ| {worst:e}");
        // The f64 composition path gives the same values.
        let f64_path = tanh_fusion(&v.to_dtype(DType::F64)?, &s.to_dtype(DType::F64)?)?;
        let worst = (f64_path - want)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(worst < 1e-12, "max |Δ| {worst:e}");
        assert!(tanh_fusion(&v, &s.narrow(1, 0, 5)?).is_err());
        Ok(())
    }
}
