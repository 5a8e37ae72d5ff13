//! A one-layer bidirectional GRU, batch first, exactly PyTorch's `nn.GRU` cell
//! (gate order r, z, n; `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`;
//! `h' = (h − n) ⊙ z + n`).
//!
//! On the CPU in f32 the input projections of every step and both directions are one product,
//! and each direction's recurrence runs as a plain loop (a matrix-vector product against the
//! transposed recurrent weight, packed once for a linear read ([`PackedGemv`]: 3 MB per
//! direction at SSP-SAM's width, re-read from L3 on every step), and one fused pass over the
//! gates per step) on its own thread;
//! elsewhere it is a composition of tensor operations per step.

use crate::activation::{sigmoid, tanh};
use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use segany_core::nn::{gemv_t, is_cpu_f32, with_f32_values, CpuMatmul, Linear, PackedGemv};

#[derive(Debug, Clone)]
struct Direction {
    /// `weight_ih` / `bias_ih`: the input projection of every step at once.
    w_ih: Linear,
    /// `weight_hhᵀ` `(H, 3H)`, contiguous.
    w_hh_t: Tensor,
    /// `weight_hhᵀ` packed for the CPU loop (f32 weights on the CPU only).
    w_hh_packed: Option<PackedGemv>,
    b_hh: Tensor,
}

impl Direction {
    fn new(input: usize, hidden: usize, suffix: &str, vb: &VarBuilder) -> Result<Self> {
        let w_hh_t = vb
            .get((3 * hidden, hidden), &format!("weight_hh_l0{suffix}"))?
            .t()?
            .contiguous()?;
        let w_hh_packed = if is_cpu_f32(&w_hh_t) {
            Some(with_f32_values(&w_hh_t, |w| {
                PackedGemv::new(w, hidden, 3 * hidden)
            })?)
        } else {
            None
        };
        Ok(Self {
            w_ih: Linear::new(
                vb.get((3 * hidden, input), &format!("weight_ih_l0{suffix}"))?,
                Some(vb.get(3 * hidden, &format!("bias_ih_l0{suffix}"))?),
            ),
            w_hh_t,
            w_hh_packed,
            b_hh: vb.get(3 * hidden, &format!("bias_hh_l0{suffix}"))?,
        })
    }

    /// Input projections `gi (B, T, 3H)` → hidden states `(B, T, H)` in time order, as tensor
    /// operations per step.
    fn run(&self, gi: &Tensor, hidden: usize, reverse: bool) -> Result<Tensor> {
        let (b, t, _) = gi.dims3()?;
        let mut h = Tensor::zeros((b, hidden), gi.dtype(), gi.device())?;
        let mut outs: Vec<Tensor> = Vec::with_capacity(t);
        let steps: Vec<usize> = if reverse {
            (0..t).rev().collect()
        } else {
            (0..t).collect()
        };
        for step in steps {
            let gi_t = gi.narrow(1, step, 1)?.squeeze(1)?;
            let gh = h.matmul(&self.w_hh_t)?.broadcast_add(&self.b_hh)?;
            let r = candle_nn::ops::sigmoid(
                &(gi_t.narrow(D::Minus1, 0, hidden)? + gh.narrow(D::Minus1, 0, hidden)?)?,
            )?;
            let z = candle_nn::ops::sigmoid(
                &(gi_t.narrow(D::Minus1, hidden, hidden)?
                    + gh.narrow(D::Minus1, hidden, hidden)?)?,
            )?;
            let n = (gi_t.narrow(D::Minus1, 2 * hidden, hidden)?
                + (r * gh.narrow(D::Minus1, 2 * hidden, hidden)?)?)?
            .tanh()?;
            h = ((&h - &n)? * z)?.add(&n)?;
            outs.push(h.clone());
        }
        if reverse {
            outs.reverse();
        }
        Tensor::stack(&outs, 1)
    }

    /// The recurrence of one sequence on the CPU: `gi (T, 3H)` → `out (T, H)` (written in time
    /// order).
    fn run_cpu(&self, gi: &[f32], out: &mut [f32], hidden: usize, reverse: bool) -> Result<()> {
        let t = gi.len() / (3 * hidden);
        with_f32_values(&self.w_hh_t, |w| {
            with_f32_values(&self.b_hh, |b_hh| {
                let mut h = vec![0f32; hidden];
                let mut gh = vec![0f32; 3 * hidden];
                for i in 0..t {
                    let step = if reverse { t - 1 - i } else { i };
                    match &self.w_hh_packed {
                        Some(packed) => packed.apply(&mut gh, &h)?,
                        None => gemv_t(&mut gh, &h, w, 3 * hidden),
                    }
                    for (g, &b) in gh.iter_mut().zip(b_hh) {
                        *g += b;
                    }
                    gru_gates(&mut h, &gi[step * 3 * hidden..(step + 1) * 3 * hidden], &gh);
                    out[step * hidden..(step + 1) * hidden].copy_from_slice(&h);
                }
                Ok(())
            })
        })
    }
}

segany_core::avx2_dispatch! {
    /// One step of the cell: `h ← (h − n)·z + n` with `r = σ(gh_r + gi_r)`,
    /// `z = σ(gh_z + gi_z)`, `n = tanh(gi_n + gh_n·r)` (ATen's `GRUCell` order), `gi`/`gh`
    /// holding the r, z, n parts (`3H` values, biases included).
    fn gru_gates(h: &mut [f32], gi: &[f32], gh: &[f32]) => gru_gates_loop
}

#[inline(always)]
fn gru_gates_loop(h: &mut [f32], gi: &[f32], gh: &[f32]) {
    let n = h.len();
    let (gi_r, rest) = gi.split_at(n);
    let (gi_z, gi_n) = rest.split_at(n);
    let (gh_r, rest) = gh.split_at(n);
    let (gh_z, gh_n) = rest.split_at(n);
    for j in 0..n {
        let r = sigmoid(gh_r[j] + gi_r[j]);
        let z = sigmoid(gh_z[j] + gi_z[j]);
        let g = tanh(gi_n[j] + gh_n[j] * r);
        h[j] = (h[j] - g) * z + g;
    }
}

/// `nn.GRU(input, hidden, num_layers=1, batch_first=True, bidirectional=True)`.
#[derive(Debug, Clone)]
pub struct BiGru {
    forward: Direction,
    backward: Direction,
    hidden: usize,
}

impl BiGru {
    /// Loads `weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0` and their `_reverse`
    /// counterparts.
    pub fn new(input: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            forward: Direction::new(input, hidden, "", &vb)?,
            backward: Direction::new(input, hidden, "_reverse", &vb)?,
            hidden,
        })
    }

    /// The arithmetic of the input projections on the CPU ([`CpuMatmul`]); the recurrence
    /// keeps f32. Whether bf16 is on.
    pub fn set_cpu_matmul(&mut self, mode: CpuMatmul) -> Result<bool> {
        Ok(self.forward.w_ih.set_cpu_matmul(mode)? & self.backward.w_ih.set_cpu_matmul(mode)?)
    }

    /// `x (B, T, I)` → `(B, T, 2H)`: forward states, then backward states, per position. Every
    /// position is processed (no packing), as SSP-SAM runs it over the padding too.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gi_f = self.forward.w_ih.forward(x)?;
        let gi_b = self.backward.w_ih.forward(x)?;
        if !is_cpu_f32(x) {
            let f = self.forward.run(&gi_f, self.hidden, false)?;
            let b = self.backward.run(&gi_b, self.hidden, true)?;
            return Tensor::cat(&[&f, &b], D::Minus1);
        }
        let (b, t, _) = x.dims3()?;
        let hd = self.hidden;
        let (mut f_out, mut b_out) = (vec![0f32; b * t * hd], vec![0f32; b * t * hd]);
        with_f32_values(&gi_f, |gf| {
            with_f32_values(&gi_b, |gb| {
                // Every (sequence, direction) pair is independent: one task each.
                let mut jobs: Vec<(&Direction, &[f32], &mut [f32], bool)> = Vec::new();
                for ((gf, gb), (fo, bo)) in gf
                    .chunks_exact(t * 3 * hd)
                    .zip(gb.chunks_exact(t * 3 * hd))
                    .zip(
                        f_out
                            .chunks_exact_mut(t * hd)
                            .zip(b_out.chunks_exact_mut(t * hd)),
                    )
                {
                    jobs.push((&self.forward, gf, fo, false));
                    jobs.push((&self.backward, gb, bo, true));
                }
                use rayon::prelude::*;
                jobs.into_par_iter()
                    .try_for_each(|(dir, gi, out, reverse)| dir.run_cpu(gi, out, hd, reverse))
            })
        })?;
        let f = Tensor::from_vec(f_out, (b, t, hd), x.device())?;
        let b = Tensor::from_vec(b_out, (b, t, hd), x.device())?;
        Tensor::cat(&[&f, &b], D::Minus1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use std::collections::HashMap;

    /// Fixed values in about `[-scale, scale]`, different per `seed`.
    fn values(dims: &[usize], seed: usize, scale: f32) -> Tensor {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0) * scale)
            .collect();
        Tensor::from_vec(v, dims, &Device::Cpu).expect("values")
    }

    fn gru(input: usize, hidden: usize, dtype: DType) -> BiGru {
        let mut map = HashMap::new();
        for (i, suffix) in ["", "_reverse"].iter().enumerate() {
            let s = 10 * i;
            map.insert(
                format!("weight_ih_l0{suffix}"),
                values(&[3 * hidden, input], s + 1, 0.4),
            );
            map.insert(
                format!("weight_hh_l0{suffix}"),
                values(&[3 * hidden, hidden], s + 2, 0.4),
            );
            map.insert(
                format!("bias_ih_l0{suffix}"),
                values(&[3 * hidden], s + 3, 0.3),
            );
            map.insert(
                format!("bias_hh_l0{suffix}"),
                values(&[3 * hidden], s + 4, 0.3),
            );
        }
        let map = map
            .into_iter()
            .map(|(k, v)| (k, v.to_dtype(dtype).expect("dtype")))
            .collect();
        BiGru::new(
            input,
            hidden,
            VarBuilder::from_tensors(map, dtype, &Device::Cpu),
        )
        .expect("gru")
    }

    /// The CPU loop (f32, two sequences, both directions on their own tasks, a hidden width
    /// that takes the matrix-vector product's 16-wide blocks and its tail) against the
    /// per-step composition in f64 on the same values, and the first step of the forward
    /// direction against the cell's formula written out.
    #[test]
    fn cpu_loop_matches_composition() -> Result<()> {
        let (b, t, input, hidden) = (2, 9, 6, 20);
        let x = values(&[b, t, input], 7, 1.5);
        let ours = gru(input, hidden, DType::F32).forward(&x)?;
        let reference = gru(input, hidden, DType::F64).forward(&x.to_dtype(DType::F64)?)?;
        assert_eq!(ours.dims(), [b, t, 2 * hidden]);
        let d = (ours.to_dtype(DType::F64)? - &reference)?
            .abs()?
            .max_all()?
            .to_scalar::<f64>()?;
        assert!(d < 1e-6, "max abs diff {d}");
        // h₁ = (0 − n)·z + n = (1 − z)·n for h₀ = 0, from the formula in f64.
        let w = |k: &str| {
            values(
                &[3 * hidden, if k == "ih" { input } else { hidden }],
                if k == "ih" { 1 } else { 2 },
                0.4,
            )
        };
        let gi = x
            .to_dtype(DType::F64)?
            .get(0)?
            .get(0)?
            .unsqueeze(0)?
            .matmul(&w("ih").t()?.to_dtype(DType::F64)?)?
            .squeeze(0)?
            + values(&[3 * hidden], 3, 0.3).to_dtype(DType::F64)?;
        let gi = gi?.to_vec1::<f64>()?;
        let gh = values(&[3 * hidden], 4, 0.3)
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let first = ours.get(0)?.get(0)?.to_vec1::<f32>()?;
        for j in 0..hidden {
            let r = sig(gi[j] + gh[j]);
            let z = sig(gi[hidden + j] + gh[hidden + j]);
            let n = (gi[2 * hidden + j] + r * gh[2 * hidden + j]).tanh();
            let h1 = (1.0 - z) * n;
            assert!(
                (first[j] as f64 - h1).abs() < 1e-6,
                "h1[{j}]: {} vs {h1}",
                first[j]
            );
        }
        Ok(())
    }
}
