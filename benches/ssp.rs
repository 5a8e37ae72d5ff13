//! SSP-SAM benchmarks.
//!
//! * `ssp_head/{224,336}`: the fusion head alone (adapters, fusion, prompt transformer, box
//!   head) on the golden files' weights and inputs (`GOLDEN_DIR`, default `../shared/golden`,
//!   the files `benches/compare/refs.py ssp` times the PyTorch head on), or on random ones of
//!   the same shapes when they are absent.
//! * `ssp_head/{224,336}_bf16`: the same with the opt-in bf16 products
//!   (`SspHead::set_cpu_matmul(CpuMatmul::Bf16)`), on CPUs with AVX-512 BF16; the distance to
//!   the f32 outputs goes to stderr.
//! * `ssp_decode`: SAM's prompt encoder + mask decoder on the 128 prompts + resizing to the 512
//!   frame.
//! * `ssp_pipeline/per_image` (SAM + CLIP Surgery image encoders) and
//!   `ssp_pipeline/per_expression` (tokenizer + CLIP text tower + head + decoder + original-size
//!   mask): the whole [`ReferringSegmenter`]. By default on random weights (SAM ViT-B, CLIP
//!   ViT-B/16, the 224 head); set `SEGANY_BENCH_SAM`, `SEGANY_BENCH_CLIP` and
//!   `SEGANY_BENCH_SSP` (as the `refer` example's `--sam/--clip/--ssp`) to time real checkpoints,
//!   e.g. SAM ViT-H + CLIP ViT-L/14@336 + the 336 head.
//!
//! `cargo bench --bench ssp`

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, Criterion};
use segany::referring::{ReferringOptions, ReferringSegmenter};
use segany::{Sam, SamConfig};
use segany_clip::{ClipConfig, ClipModel, ClipTokenizer};
use segany_core::checkpoint::CheckedVarBuilder;
use segany_core::nn::CpuMatmul;
use segany_core::TensorStore;
use segany_ssp::{is_ignored_key, ClipFeatures, SspSam, SspSamConfig};
use std::path::PathBuf;
use std::time::Duration;

/// Fills every variable of a VarMap with small random values (VarMap leaves some at zero).
fn randomize(varmap: &VarMap) {
    for var in varmap.data().lock().expect("varmap").values() {
        let t = var.as_tensor();
        let r = Tensor::randn(0f32, 0.02, t.shape(), t.device()).expect("randn");
        var.set(&r).expect("set");
    }
}

fn random_ssp(cfg: &SspSamConfig) -> SspSam {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = SspSam::new(cfg, vb).expect("build SSP-SAM");
    randomize(&varmap);
    // Rebuild so the model sees the randomized values (`Linear` copies its weight, transposed,
    // at build time, so the first model keeps the initial ones).
    SspSam::new(
        cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap_or(model)
}

struct Inputs {
    img: Tensor,
    txt: Tensor,
    words: Tensor,
    ids: Tensor,
    emb: Tensor,
}

fn inputs(cfg: &SspSamConfig) -> Inputs {
    let dev = Device::Cpu;
    let n = 1 + cfg.grid() * cfg.grid();
    let mut ids = vec![0u32; 77];
    ids[..8].copy_from_slice(&[49406, 518, 786, 525, 518, 1823, 269, 49407]);
    Inputs {
        img: Tensor::randn(0f32, 1., (1, n, cfg.clip_dim), &dev).expect("randn"),
        txt: Tensor::randn(0f32, 1., (1, cfg.clip_dim), &dev).expect("randn"),
        words: Tensor::randn(0f32, 1., (1, 77, cfg.clip_dim), &dev).expect("randn"),
        ids: Tensor::from_vec(ids, (1, 77), &dev).expect("ids"),
        emb: Tensor::randn(0f32, 1., (1, 256, 64, 64), &dev).expect("randn"),
    }
}

/// `GOLDEN_DIR`, or `../shared/golden` beside the repository.
fn golden_dir() -> PathBuf {
    std::env::var_os("GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/golden"))
}

/// The head and inputs of a golden file (weights stored as f16, loaded as f32), if present.
fn golden_ssp(cfg: &SspSamConfig) -> Option<(SspSam, Inputs)> {
    let file = match cfg.image_size {
        224 => "ssp_sam_224_seed1.safetensors",
        _ => "ssp_sam_336_seed2.safetensors",
    };
    let path = golden_dir().join(file);
    let store = TensorStore::load(&path).ok()?;
    let f32 = |k: &str| store.get(k).and_then(|t| t.to_dtype(DType::F32).ok());
    let x = Inputs {
        img: f32("inputs.clip_image_features")?,
        txt: f32("inputs.clip_text_embedding")?,
        words: f32("inputs.clip_word_features")?,
        ids: store.get("inputs.token_ids")?.clone(),
        emb: f32("inputs.sam_image_embedding")?,
    };
    let weights = store.rename(|k| k.strip_prefix("weights.").map(str::to_string));
    let cvb = CheckedVarBuilder::new(weights, DType::F32, &Device::Cpu);
    let built = SspSam::new(cfg, cvb.var_builder());
    let model = cvb.finish(built, is_ignored_key).ok()?;
    eprintln!(
        "ssp_head/{}: golden weights and inputs from {}",
        cfg.image_size,
        path.display()
    );
    Some((model, x))
}

fn bench_head(c: &mut Criterion) {
    let mut g = c.benchmark_group("ssp_head");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    for cfg in [SspSamConfig::vit_b16_224(), SspSamConfig::vit_l14_336()] {
        let (model, x) = golden_ssp(&cfg).unwrap_or_else(|| {
            eprintln!(
                "ssp_head/{}: no golden file in {} (GOLDEN_DIR); random weights and inputs",
                cfg.image_size,
                golden_dir().display()
            );
            (random_ssp(&cfg), inputs(&cfg))
        });
        let clip = ClipFeatures {
            image_tokens: &x.img,
            text_embedding: &x.txt,
            word_features: &x.words,
            token_ids: &x.ids,
        };
        g.bench_function(cfg.image_size.to_string(), |b| {
            b.iter(|| model.head.forward(&clip).expect("head"))
        });
        // The opt-in bf16 products, where the CPU has them; their distance to f32 on stderr.
        let mut half = model.head.clone();
        if half.set_cpu_matmul(CpuMatmul::Bf16).expect("bf16") {
            let f32_out = model.head.forward(&clip).expect("head");
            let out = half.forward(&clip).expect("head in bf16");
            let max_abs = |a: &Tensor, b: &Tensor| -> f32 {
                (a - b)
                    .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
                    .expect("difference")
            };
            eprintln!(
                "ssp_head/{}_bf16: max |Δ| to f32: prompts {:.2e}, boxes {:.2e}",
                cfg.image_size,
                max_abs(&out.prompts, &f32_out.prompts),
                max_abs(&out.boxes, &f32_out.boxes)
            );
            g.bench_function(format!("{}_bf16", cfg.image_size), |b| {
                b.iter(|| half.forward(&clip).expect("head in bf16"))
            });
        }
    }
    g.finish();

    let cfg = SspSamConfig::vit_b16_224();
    let model = random_ssp(&cfg);
    let x = inputs(&cfg);
    let prompts = Tensor::randn(0f32, 1., (1, 128, 256), &Device::Cpu).expect("randn");
    let mut g = c.benchmark_group("ssp_decode");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("prompts_to_512_logits", |b| {
        b.iter(|| model.decode(&prompts, &x.emb).expect("decode"))
    });
    g.finish();
}

fn random_pipeline() -> ReferringSegmenter {
    let dev = Device::Cpu;
    let sam_map = VarMap::new();
    let sam = Sam::new(
        &SamConfig::vit_b(),
        VarBuilder::from_varmap(&sam_map, DType::F32, &dev),
    )
    .expect("SAM ViT-B");
    let clip_map = VarMap::new();
    let clip = ClipModel::new(
        &ClipConfig::vit_b_16(),
        VarBuilder::from_varmap(&clip_map, DType::F32, &dev),
    )
    .expect("CLIP ViT-B/16");
    let tokenizer = ClipTokenizer::openai().expect("tokenizer");
    let ssp = random_ssp(&SspSamConfig::vit_b16_224());
    ReferringSegmenter::from_parts(sam, clip, tokenizer, ssp, ReferringOptions::default())
        .expect("pipeline")
}

fn pipeline() -> (ReferringSegmenter, &'static str) {
    let env = |k: &str| std::env::var(k).ok();
    match (
        env("SEGANY_BENCH_SAM"),
        env("SEGANY_BENCH_CLIP"),
        env("SEGANY_BENCH_SSP"),
    ) {
        (Some(sam), Some(clip), Some(ssp)) => (
            ReferringSegmenter::load(&sam, &clip, &PathBuf::from(ssp), &Device::Cpu)
                .expect("load the SEGANY_BENCH_* checkpoints"),
            "checkpoints",
        ),
        _ => (random_pipeline(), "random-vitb"),
    }
}

fn image(seed: u8) -> image::RgbImage {
    image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([
            (x % 256) as u8 ^ seed,
            (y % 256) as u8,
            ((x + y) % 256) as u8,
        ])
    })
}

fn bench_pipeline(c: &mut Criterion) {
    let (mut seg, what) = pipeline();
    let images = [image(0), image(1)];
    let mut g = c.benchmark_group(format!("ssp_pipeline_{what}"));
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    let mut i = 0usize;
    // Alternate two images so every iteration really encodes (identical pixels are cached).
    g.bench_function("per_image", |b| {
        b.iter(|| {
            i += 1;
            seg.set_image(&images[i % 2]).expect("set_image")
        })
    });
    seg.set_image(&images[0]).expect("set_image");
    g.bench_function("per_expression", |b| {
        b.iter(|| seg.segment_text("the man on the left").expect("segment"))
    });
    g.finish();
}

criterion_group!(benches, bench_head, bench_pipeline);
criterion_main!(benches);
