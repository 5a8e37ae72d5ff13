//! CPU f32 kernels for the image side of the mask decoder, the part that runs per prompt.
//!
//! Every prompt carries its own copy of the 64×64×256 image tokens through the two-way
//! transformer and the output upscaling. Run as tensor operations, each step allocates and
//! rewrites that whole copy several times (head splits, biases, residuals, norms, reshuffles),
//! and the projections of the image multiply all 4,096 tokens by full weight matrices although
//! the other side of each attention has only a handful of tokens. These kernels compute the
//! same functions with the products reassociated around the few tokens, in tiles that stay in
//! cache:
//!
//! * [`token_to_image`]: tokens attend to a per-prompt image. `q·Kᵀ = (q·W_k)·(x+pe)ᵀ` and
//!   `A·V = (A·x)·W_vᵀ`: two products with a (heads·tokens)-row matrix instead of projecting
//!   every image token to keys and values.
//! * [`image_to_token`]: the image attends to the tokens, then the residual and `norm4`. The
//!   queries' product with the keys folds to `(x+pe)·(W_qᵀ·kᵀ)` and `out_proj` folds into the
//!   values, so the update is `A·(V·W_oᵀ)`; done in row tiles together with the residual and
//!   the layer norm.
//! * [`token_to_shared_image`]: the first block's tokens attending to the image every prompt
//!   shares (projected once per image): one head and up to 64 query rows per task through
//!   scores, softmax and values, instead of materialising all prompts' scores at once.
//! * [`token_to_low_rank_image`] and [`upscale_factored_masks_into`]: for a batch of prompts on
//!   one image, every image-to-token step is a rank-(heads·tokens) update and a layer norm
//!   ([`image_to_token_factored`] records it), so after the first block each prompt's image
//!   tokens are the shared image plus a narrow per-prompt product ([`LowRankKeys`]); the
//!   later token-to-image attentions and `up1` read that form, with the shared image's
//!   projections computed once per image ([`SharedProjections`]). No block's tokens are
//!   materialised: the norms' statistics come from the factored form too (`norm_stats`).
//! * [`upscale_masks`]: both transposed convolutions, their norm and GELUs and the
//!   hypernetwork product, one row of the embedding grid at a time, never materialising the
//!   256×256×32 upscaled features.
//!
//! The arithmetic differs from the plain composition only in the order of the sums and in the
//! polynomial `erf` and `exp` (see `segany_core::nn::{erf, exp}`); the tests in each file
//! compare with that composition on random weights.

mod image_to_token;
mod image_update;
mod low_rank;
mod norm_stats;
mod pool;
mod shared;
mod tile_scores;
mod token_to_image;
mod token_to_shared_image;
mod upscale;

#[cfg(test)]
pub use image_to_token::image_to_token_tracked;
pub use image_to_token::{image_to_token, image_to_token_factored, ImageQueries};
pub use image_update::ImageUpdate;
pub use low_rank::{token_to_low_rank_image, LowRankKeys};
pub use pool::BufferPool;
pub use shared::{SharedProjections, SharedQueries};
pub use token_to_image::token_to_image;
pub use token_to_shared_image::token_to_shared_image;
pub use upscale::{upscale_factored_masks_into, upscale_masks};

use candle_core::{DType, Result, Tensor};
use segany_core::nn::is_cpu_f32;

/// Whether the kernels apply: CPU tensors in f32.
pub fn applies(t: &Tensor) -> bool {
    #[cfg(test)]
    if DISABLED.with(|d| d.get()) {
        return false;
    }
    is_cpu_f32(t)
}

#[cfg(test)]
thread_local! {
    /// Tests set this to run the layer composition on the CPU (on their own thread only).
    pub(crate) static DISABLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The values of a small tensor (weights, biases, token projections).
pub(crate) fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()
}

#[cfg(test)]
fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    if a.dims() != b.dims() {
        candle_core::bail!("shapes differ: {:?} vs {:?}", a.dims(), b.dims())
    }
    (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
}
