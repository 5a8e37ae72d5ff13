//! MLP activations used by CLIP checkpoints.

use candle_core::{Module, Result, Tensor};

/// Activation of the transformer MLPs.
///
/// OpenAI's checkpoints were trained with QuickGELU; LAION / open_clip models (and
/// transformers configs with `"hidden_act": "gelu"`) use the exact erf GELU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)` (`quick_gelu`).
    QuickGelu,
    /// Exact GELU, `0.5 x (1 + erf(x / sqrt 2))` (`gelu`).
    Gelu,
    /// Tanh approximation of GELU (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
}

impl Activation {
    /// Parses a transformers `hidden_act` string; `None` when unsupported.
    pub fn from_hidden_act(name: &str) -> Option<Self> {
        match name {
            "quick_gelu" => Some(Self::QuickGelu),
            "gelu" => Some(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Self::GeluTanh),
            _ => None,
        }
    }
}

impl Module for Activation {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702f64)?)?,
            Self::Gelu => xs.gelu_erf(),
            Self::GeluTanh => xs.gelu(),
        }
    }
}
