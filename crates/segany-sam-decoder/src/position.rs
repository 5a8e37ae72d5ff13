//! Random Fourier-feature positional encoding (`PositionEmbeddingRandom`).

use candle_core::{DType, Device, Result, Tensor, D};
use candle_nn::VarBuilder;

/// Positional encoding with a fixed Gaussian matrix
/// (`prompt_encoder.pe_layer.positional_encoding_gaussian_matrix`, `2 × hidden/2`).
#[derive(Debug, Clone)]
pub struct PositionEmbeddingRandom {
    gaussian: Tensor,
}

impl PositionEmbeddingRandom {
    /// Loads the matrix for `num_pos_feats` features (half the embedding width).
    pub fn new(num_pos_feats: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            gaussian: vb.get((2, num_pos_feats), "positional_encoding_gaussian_matrix")?,
        })
    }

    /// Encodes coordinates normalised to `[0, 1]`, shape `(..., 2)` → `(..., 2·F)` as
    /// `[sin(2π(2c−1)G), cos(2π(2c−1)G)]`.
    pub fn encode(&self, coords: &Tensor) -> Result<Tensor> {
        let dims = coords.dims().to_vec();
        let n: usize = dims[..dims.len() - 1].iter().product();
        let c = ((coords.reshape((n, 2))? * 2.0)? - 1.0)?;
        let c = c
            .to_dtype(DType::F32)?
            .matmul(&self.gaussian.to_dtype(DType::F32)?)?;
        let c = (c * (2.0 * std::f64::consts::PI))?;
        let out = Tensor::cat(&[c.sin()?, c.cos()?], D::Minus1)?.to_dtype(self.gaussian.dtype())?;
        let mut out_dims = dims[..dims.len() - 1].to_vec();
        out_dims.push(out.dim(1)?);
        out.reshape(out_dims)
    }

    /// Dense encoding of an `h × w` grid of cell centres: `(2·F, h, w)`.
    pub fn grid(&self, h: usize, w: usize, device: &Device) -> Result<Tensor> {
        let mut xy = Vec::with_capacity(h * w * 2);
        for i in 0..h {
            for j in 0..w {
                // cumsum(ones) - 0.5, divided by the size, in f32 as the reference.
                xy.push((j as f32 + 1.0 - 0.5) / w as f32);
                xy.push((i as f32 + 1.0 - 0.5) / h as f32);
            }
        }
        let coords = Tensor::from_vec(xy, (h, w, 2), device)?.to_dtype(DType::F32)?;
        self.encode(&coords)?.permute((2, 0, 1))?.contiguous()
    }

    /// Encodes pixel coordinates `(B, N, 2)` of an `image_size = (h, w)` frame.
    pub fn encode_pixels(&self, coords: &Tensor, image_size: (usize, usize)) -> Result<Tensor> {
        let size = Tensor::new(&[image_size.1 as f32, image_size.0 as f32], coords.device())?;
        let normed = coords.to_dtype(DType::F32)?.broadcast_div(&size)?;
        self.encode(&normed)
    }
}
