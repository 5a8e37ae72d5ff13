//! SAM benchmarks: the ViT-B image encoder at 1024² (in f32, and with the opt-in bf16 products
//! on CPUs with AVX-512 BF16) and one prompt through prompt encoder + mask decoder +
//! post-processing, on random weights.
//!
//! `cargo bench --bench sam` times segany; with `--features compare-candle` the same weights and
//! input also go through candle-transformers' `segment_anything`. `benches/compare/run.sh` runs
//! this together with the reference implementations and writes a table of ratios.

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use segany::core::nn::CpuMatmul;
use segany::core::TensorStore;
use segany::{Prompt, Sam, SamConfig, SamPredictor};
use std::collections::HashMap;
use std::time::Duration;

/// Random ViT-B weights under Meta names (shapes from a VarMap-built model), or the Meta-layout
/// safetensors file named by `SEGANY_BENCH_SAM_WEIGHTS` (`benches/compare/run.sh` passes the
/// file every reference implementation loads).
fn random_vit_b() -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    if let Ok(path) = std::env::var("SEGANY_BENCH_SAM_WEIGHTS") {
        return candle_core::safetensors::load(&path, &dev).expect("SEGANY_BENCH_SAM_WEIGHTS");
    }
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    Sam::new(&SamConfig::vit_b(), vb).expect("build ViT-B");
    let mut out = HashMap::new();
    for (name, var) in varmap.data().lock().expect("varmap").iter() {
        let t = var.as_tensor();
        // Small random values everywhere (VarMap leaves some tensors at zero).
        let r = Tensor::randn(0f32, 0.02, t.shape(), &dev).expect("randn");
        out.insert(name.clone(), r);
    }
    out
}

fn image() -> image::RgbImage {
    image::RgbImage::from_fn(1024, 768, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    })
}

fn bench(c: &mut Criterion) {
    let weights = random_vit_b();
    let sam = Sam::from_store(
        TensorStore::from_tensors(weights.clone()),
        None,
        &Device::Cpu,
        DType::F32,
    )
    .expect("load");
    let (pixels, _) = segany::core::image::ResizeLongestSide::new(1024)
        .preprocess(&image(), &Device::Cpu)
        .expect("preprocess");

    let mut g = c.benchmark_group("sam_vit_b");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(60))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("segany_encoder_1024", |b| {
        b.iter(|| sam.encode(&pixels).expect("encode"))
    });

    // The opt-in bf16 products (`ImageEncoder::set_cpu_matmul`), where the CPU has them; the
    // embedding's distance to f32 on stderr.
    let mut half = sam.clone();
    if half
        .image_encoder
        .set_cpu_matmul(CpuMatmul::Bf16)
        .expect("bf16")
    {
        let f32_emb = sam.encode(&pixels).expect("encode");
        let emb = half.encode(&pixels).expect("encode in bf16");
        let diff = (&emb - &f32_emb)
            .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
            .expect("difference");
        let spread = f32_emb
            .flatten_all()
            .and_then(|t| t.var(0)?.sqrt()?.to_scalar::<f32>())
            .expect("spread");
        eprintln!(
            "sam_vit_b/segany_encoder_1024_bf16: embedding max |Δ| to f32 {diff:.2e} \
             ({:.2e} of its standard deviation)",
            diff / spread
        );
        g.bench_function("segany_encoder_1024_bf16", |b| {
            b.iter(|| half.encode(&pixels).expect("encode in bf16"))
        });
    }

    let mut predictor = SamPredictor::new(sam.clone());
    predictor.set_image(&image()).expect("set_image");
    let prompt = Prompt::new().foreground(500.0, 375.0);
    g.bench_function("segany_decoder_one_point", |b| {
        b.iter(|| predictor.predict(&prompt, true).expect("predict"))
    });

    #[cfg(feature = "compare-candle")]
    {
        use candle_transformers::models::segment_anything::sam::Sam as CtSam;
        let vb = candle_nn::VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
        let ct = CtSam::new(768, 12, 12, &[2, 5, 8, 11], vb).expect("candle-transformers Sam");
        let img = pixels.squeeze(0).expect("squeeze");
        // Its `embeddings` normalises internally; feed the same padded 0..255 image it expects.
        let raw = (img.clone() * 0.0)
            .expect("zeros")
            .affine(1.0, 128.0)
            .expect("raw");
        g.bench_function("candle_transformers_encoder_1024", |b| {
            b.iter(|| ct.embeddings(&raw).expect("embeddings"))
        });
        let emb = ct.embeddings(&raw).expect("embeddings");
        g.bench_function("candle_transformers_decoder_one_point", |b| {
            b.iter(|| {
                ct.forward_for_embeddings(
                    &emb,
                    768,
                    1024,
                    &[(500.0 / 1024.0, 375.0 / 768.0, true)],
                    true,
                )
                .expect("decode")
            })
        });
    }
    g.finish();
}

/// MobileSAM's TinyViT-5M encoder at 1024² next to the ViT-B encoder above, on the
/// `mobile_sam.pt`-layout file named by `SEGANY_BENCH_TINY_VIT_WEIGHTS` (`benches/compare/run.sh`
/// passes the random weights its PyTorch reference loads), else on random weights (BatchNorm
/// variances 1).
fn bench_tiny_vit(c: &mut Criterion) {
    let dev = Device::Cpu;
    let weights = match std::env::var("SEGANY_BENCH_TINY_VIT_WEIGHTS") {
        Ok(path) => {
            candle_core::safetensors::load(&path, &dev).expect("SEGANY_BENCH_TINY_VIT_WEIGHTS")
        }
        Err(_) => random_tiny_vit(&dev),
    };
    let sam = Sam::from_store(TensorStore::from_tensors(weights), None, &dev, DType::F32)
        .expect("load MobileSAM");
    let (pixels, _) = segany::core::image::ResizeLongestSide::new(1024)
        .preprocess(&image(), &dev)
        .expect("preprocess");
    let mut g = c.benchmark_group("sam_vit_t");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("segany_tiny_vit_encoder_1024", |b| {
        b.iter(|| sam.encode(&pixels).expect("encode"))
    });
    g.finish();
}

/// Random MobileSAM weights under Meta names (BatchNorm variances 1).
fn random_tiny_vit(dev: &Device) -> HashMap<String, Tensor> {
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, dev);
    Sam::new(&SamConfig::vit_t(), vb).expect("build MobileSAM");
    let mut weights = HashMap::new();
    for (name, var) in varmap.data().lock().expect("varmap").iter() {
        let t = var.as_tensor();
        let r = if name.ends_with("running_var") {
            Tensor::ones(t.shape(), DType::F32, dev)
        } else {
            Tensor::randn(0f32, 0.02, t.shape(), dev)
        };
        weights.insert(name.clone(), r.expect("random weights"));
    }
    weights
}

criterion_group!(benches, bench, bench_tiny_vit);
criterion_main!(benches);
