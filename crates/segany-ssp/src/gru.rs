//! A one-layer bidirectional GRU, batch first, exactly PyTorch's `nn.GRU` cell
//! (gate order r, z, n; `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`;
//! `h' = (h − n) ⊙ z + n`).

use candle_core::{Result, Tensor, D};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
struct Direction {
    w_ih_t: Tensor,
    b_ih: Tensor,
    w_hh_t: Tensor,
    b_hh: Tensor,
}

impl Direction {
    fn new(input: usize, hidden: usize, suffix: &str, vb: &VarBuilder) -> Result<Self> {
        Ok(Self {
            w_ih_t: vb
                .get((3 * hidden, input), &format!("weight_ih_l0{suffix}"))?
                .t()?
                .contiguous()?,
            b_ih: vb.get(3 * hidden, &format!("bias_ih_l0{suffix}"))?,
            w_hh_t: vb
                .get((3 * hidden, hidden), &format!("weight_hh_l0{suffix}"))?
                .t()?
                .contiguous()?,
            b_hh: vb.get(3 * hidden, &format!("bias_hh_l0{suffix}"))?,
        })
    }

    /// `x (B, T, I)` → hidden states `(B, T, H)` in time order.
    fn run(&self, x: &Tensor, hidden: usize, reverse: bool) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        // Input projections of every step at once: (B, T, 3H).
        let gi = x
            .broadcast_matmul(&self.w_ih_t)?
            .broadcast_add(&self.b_ih)?;
        let mut h = Tensor::zeros((b, hidden), x.dtype(), x.device())?;
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

    /// `x (B, T, I)` → `(B, T, 2H)`: forward states, then backward states, per position. Every
    /// position is processed (no packing), as SSP-SAM runs it over the padding too.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let f = self.forward.run(x, self.hidden, false)?;
        let b = self.backward.run(x, self.hidden, true)?;
        Tensor::cat(&[&f, &b], D::Minus1)
    }
}
