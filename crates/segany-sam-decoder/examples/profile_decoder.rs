//! Timing driver for profiling (not a benchmark: use `cargo bench --bench sam` for claims).
//!
//! ```text
//! cargo build --profile release-with-debug -p segany-sam-decoder --example profile_decoder
//! perf record -g target/release-with-debug/examples/profile_decoder 200
//! ```
//!
//! Runs N prompts (one foreground point, multimask) through a random ViT-B-sized prompt
//! encoder and mask decoder plus SAM's post-processing to 1024×768, and prints the mean time
//! of each stage, and of prompt encoder + decoder on a prepared image (`MaskDecoder::prepare`,
//! as `SamPredictor` decodes).

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use segany_core::image::postprocess_masks;
use segany_sam_decoder::{MaskDecoder, MaskDecoderConfig, PromptEncoder, PromptEncoderConfig};
use std::time::Instant;

fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let pe = PromptEncoder::new(&PromptEncoderConfig::default(), vb.pp("prompt_encoder"))?;
    let md = MaskDecoder::new(&MaskDecoderConfig::default(), vb.pp("mask_decoder"))?;
    for var in varmap.all_vars() {
        var.set(&Tensor::randn(0f32, 0.02, var.shape(), &dev)?)?;
    }
    let emb = Tensor::randn(0f32, 1.0, (1, 256, 64, 64), &dev)?;
    let image_pe = pe.get_dense_pe()?;
    let coords = Tensor::new(&[[[500f32, 500.]]], &dev)?;
    let labels = Tensor::new(&[[1f32]], &dev)?;
    let mut t = [0f64; 3];
    // The predictor's path: the image side prepared once, then sparse prompts only.
    let prepared = md.prepare(&emb, &image_pe, &pe.no_mask_dense()?)?;
    let mut t_prepared = 0f64;
    for _ in 0..n {
        let t0 = Instant::now();
        let sparse = pe.forward_sparse(Some((&coords, &labels)), None)?;
        let (low, _iou) = md.forward_prepared(&prepared, &sparse, true)?;
        drop(low);
        t_prepared += t0.elapsed().as_secs_f64() * 1e3 / n as f64;
    }
    for _ in 0..n {
        let t0 = Instant::now();
        let (sparse, dense) = pe.forward(Some((&coords, &labels)), None, None)?;
        let t1 = Instant::now();
        let (low, _iou) = md.forward(&emb, &image_pe, &sparse, &dense, true)?;
        let t2 = Instant::now();
        let full = postprocess_masks(&low, 1024, (768, 1024), (768, 1024))
            .map_err(candle_core::Error::wrap)?;
        drop(full);
        let t3 = Instant::now();
        for (acc, d) in t.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2]) {
            *acc += d.as_secs_f64() * 1e3 / n as f64;
        }
    }
    println!(
        "prompt encoder {:.2} ms, mask decoder {:.2} ms, post-processing {:.2} ms; \
         prepared image: prompt encoder + mask decoder {:.2} ms",
        t[0], t[1], t[2], t_prepared
    );
    Ok(())
}
