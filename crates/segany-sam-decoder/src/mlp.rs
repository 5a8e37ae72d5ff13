//! The small MLP of the mask decoder (ReLU between layers, none after the last).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use segany_core::nn::{linear, Linear};

/// `layers.0 .. layers.{n-1}` linear layers.
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Linear>,
    sigmoid_output: bool,
}

impl Mlp {
    /// Loads an MLP `input → hidden × (n−1) → output`.
    pub fn new(
        input: usize,
        hidden: usize,
        output: usize,
        num_layers: usize,
        sigmoid_output: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let mut dims = vec![input];
        dims.extend(std::iter::repeat_n(hidden, num_layers.saturating_sub(1)));
        dims.push(output);
        let layers = (0..num_layers)
            .map(|i| linear(dims[i], dims[i + 1], vb.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            sigmoid_output,
        })
    }
}

impl Mlp {
    /// The arithmetic of the layers' products on the CPU ([`segany_core::nn::CpuMatmul`]);
    /// whether bf16 is on.
    pub fn set_cpu_matmul(&mut self, mode: segany_core::nn::CpuMatmul) -> Result<bool> {
        let mut on = true;
        for layer in &mut self.layers {
            on &= layer.set_cpu_matmul(mode)?;
        }
        Ok(on)
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            // ReLU in the bias pass of the layer's product (the same values).
            x = if i < last {
                layer.forward_relu(&x)?
            } else {
                layer.forward(&x)?
            };
        }
        if self.sigmoid_output {
            candle_nn::ops::sigmoid(&x)
        } else {
            Ok(x)
        }
    }
}
