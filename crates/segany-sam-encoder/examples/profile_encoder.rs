//! Timing driver for profiling (not a benchmark: use `cargo bench --bench sam` for claims).
//!
//! ```text
//! cargo build --profile release-with-debug -p segany-sam-encoder --example profile_encoder
//! perf record -g target/release-with-debug/examples/profile_encoder encoder 2
//! target/release-with-debug/examples/profile_encoder gemm 2048
//! ```
//!
//! `encoder N`: N forward passes of a random ViT-B encoder at 1024², each timed.
//! `block N`: N passes of one windowed and one global block. `gemm S`: an S³ f32 matmul
//! through candle, with its GFLOP/s.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use segany_sam_encoder::{ImageEncoderConfig, ImageEncoderViT};
use std::time::Instant;

fn encoder() -> Result<ImageEncoderViT> {
    let cfg = ImageEncoderConfig::default();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let enc = ImageEncoderViT::new(&cfg, vb.pp("image_encoder"))?;
    // Small random values everywhere (VarMap leaves some tensors at zero).
    for var in varmap.all_vars() {
        var.set(&Tensor::randn(0f32, 0.02, var.shape(), &Device::Cpu)?)?;
    }
    Ok(enc)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("encoder");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let dev = Device::Cpu;
    match what {
        "gemm" => {
            let a = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
            let b = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
            for _ in 0..5 {
                let t = Instant::now();
                let c = a.matmul(&b)?;
                let s = t.elapsed().as_secs_f64();
                drop(c);
                println!(
                    "{n}³ sgemm: {:.1} GFLOP/s",
                    2.0 * (n as f64).powi(3) / s / 1e9
                );
            }
        }
        "block" => {
            let enc = encoder()?;
            let x = Tensor::randn(0f32, 1.0, (1, 64, 64, 768), &dev)?;
            for _ in 0..n {
                for i in [0, 2] {
                    let t = Instant::now();
                    let y = enc.blocks()[i].forward(&x)?;
                    drop(y);
                    println!("block {i}: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        _ => {
            let enc = encoder()?;
            let x = Tensor::randn(0f32, 1.0, (1, 3, 1024, 1024), &dev)?;
            for _ in 0..n {
                let t = Instant::now();
                let y = enc.forward(&x)?;
                drop(y);
                println!("encoder: {:.3} s", t.elapsed().as_secs_f64());
            }
        }
    }
    Ok(())
}
