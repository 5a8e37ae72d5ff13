//! Deterministic test data for the unit tests.

use candle_core::{Device, Result, Tensor};
use candle_nn::VarMap;

/// Uniform values in `[-scale·√3, scale·√3]` (standard deviation `scale`) from a fixed
/// seed (splitmix64), so the test sees the same weights on every run.
pub fn pseudo_random(dims: &[usize], seed: u64, scale: f32) -> Result<Tensor> {
    let mut state = seed;
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 40) as f32 / (1u64 << 24) as f32;
            (2.0 * u - 1.0) * scale * 3f32.sqrt()
        })
        .collect();
    Tensor::from_vec(values, dims, &Device::Cpu)
}

/// A seed from a variable's name (FNV-1a): the VarMap's iteration order is not stable.
pub fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Sets every variable of `varmap` to [`pseudo_random`] values of standard deviation `scale`,
/// seeded by the variable's name.
pub fn randomise(varmap: &VarMap, scale: f32) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("varmap lock poisoned".into()))?;
    for (name, var) in data.iter() {
        var.set(&pseudo_random(var.shape().dims(), seed_of(name), scale)?)?;
    }
    Ok(())
}
