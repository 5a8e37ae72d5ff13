//! Automatic mask generation benchmarks: a 32×32 point grid (1,024 points, 3,072 decoded masks)
//! on a 1024×1024 image with the real SAM prompt encoder + mask decoder.
//!
//! The encoder is taken out of the timing by giving the generator a tiny image encoder (one
//! windowed 64-wide block, but SAM's 64×64×256 embedding, so the decoder side is unchanged);
//! `amg_grid32/tiny_encoder` times that encoder alone so it can be subtracted:
//!
//! * `amg_grid32/default`: the official generator's thresholds (`pred_iou_thresh` 0.88,
//!   `stability_score_thresh` 0.95, binary-mask output).
//! * `amg_grid32/keep_all`: both thresholds off, so all 3,072 masks go through the stability
//!   score, boxes, RLE and NMS (the most post-processing a 32×32 grid can cause).
//! * `upscale_all` (only with `SEGANY_BENCH_AMG_ONCE`): every mask upscaled and its stability
//!   score taken, none kept (`stability_score_thresh` above 1), so no boxes or RLE: the part of
//!   `keep_all` that real weights, whose IoU predictions pass the filter for most points, cause
//!   whatever their masks look like. Random weights' masks are noise, whose RLEs are far
//!   longer than a real mask's.
//! * `amg_grid32/tiny_encoder`: the tiny encoder's `set_image` alone.
//! * `amg_grid32/vit_b_total` (only with `SEGANY_BENCH_AMG_FULL=1`; ≈ 4 × the encoder time):
//!   the whole generator with the ViT-B encoder, as a user runs it.
//!
//! Throughput is reported per decoded mask (3,072 per image). Decoder weights: random ViT-B
//! ones, or those of the Meta-layout file named by `SEGANY_BENCH_SAM_WEIGHTS` (what
//! `benches/compare/run.sh` gives every implementation). The masks kept with each setting are
//! printed once. `cargo bench --bench amg` (one generation takes about 25 s on a 2-core
//! machine, so criterion's minimum of 10 samples makes this slow: add `-- --quick`).
//!
//! With `SEGANY_BENCH_AMG_ONCE=FILE` no criterion run happens: the tiny encoder is timed three
//! times (median) and each setting named in `SEGANY_BENCH_AMG_CONFIGS` (comma-separated,
//! default `keep_all`) generates once; the seconds and kept-mask counts go to `FILE` as JSON
//! (`benches/compare/run.sh` uses this).

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, Criterion, Throughput};
use segany::core::TensorStore;
use segany::sam_encoder::ImageEncoderConfig;
use segany::{AmgConfig, Sam, SamAutomaticMaskGenerator, SamConfig, SamPredictor};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const GRID: usize = 32;

/// Random weights for every tensor `cfg` needs, under Meta names.
fn random_weights(cfg: &SamConfig) -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    Sam::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).expect("build SAM");
    let data = varmap.data().lock().expect("varmap");
    data.iter()
        .map(|(name, var)| {
            let r = Tensor::randn(0f32, 0.02, var.as_tensor().shape(), &dev).expect("randn");
            (name.clone(), r)
        })
        .collect()
}

/// ViT-B weights: the `SEGANY_BENCH_SAM_WEIGHTS` file or random.
fn vit_b_weights() -> HashMap<String, Tensor> {
    match std::env::var("SEGANY_BENCH_SAM_WEIGHTS") {
        Ok(path) => {
            candle_core::safetensors::load(&path, &Device::Cpu).expect("SEGANY_BENCH_SAM_WEIGHTS")
        }
        Err(_) => random_weights(&SamConfig::vit_b()),
    }
}

/// One windowed block, 64 wide, SAM's 1024² input and 256-channel 64×64 output.
fn tiny_encoder_config() -> SamConfig {
    SamConfig {
        vision_config: ImageEncoderConfig {
            hidden_size: 64,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            mlp_dim: Some(128),
            global_attn_indexes: vec![],
            ..ImageEncoderConfig::vit_b()
        },
        ..SamConfig::vit_b()
    }
}

/// The ViT-B prompt encoder + mask decoder with a tiny random image encoder.
fn tiny_encoder_sam(vit_b: &HashMap<String, Tensor>) -> Sam {
    let cfg = tiny_encoder_config();
    let mut weights: HashMap<String, Tensor> = random_weights(&cfg)
        .into_iter()
        .filter(|(k, _)| k.starts_with("image_encoder."))
        .collect();
    weights.extend(
        vit_b
            .iter()
            .filter(|(k, _)| !k.starts_with("image_encoder."))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    Sam::from_store(
        TensorStore::from_tensors(weights),
        Some(cfg),
        &Device::Cpu,
        DType::F32,
    )
    .expect("tiny-encoder SAM")
}

/// A 1024×1024 RGB image (the pattern of `benches/sam.rs`, square).
fn image() -> image::RgbImage {
    image::RgbImage::from_fn(1024, 1024, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    })
}

fn keep_all() -> AmgConfig {
    AmgConfig {
        pred_iou_thresh: 0.0,
        stability_score_thresh: 0.0,
        ..AmgConfig::default()
    }
}

/// Every mask upscaled and scored, none kept: see the module docs.
fn upscale_all() -> AmgConfig {
    AmgConfig {
        pred_iou_thresh: 0.0,
        stability_score_thresh: 1.5,
        ..AmgConfig::default()
    }
}

fn bench(c: &mut Criterion) {
    let vit_b = vit_b_weights();
    let sam = tiny_encoder_sam(&vit_b);
    let img = image();
    let mut g = c.benchmark_group("amg_grid32");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements((GRID * GRID * 3) as u64));
    for (name, cfg) in [("default", AmgConfig::default()), ("keep_all", keep_all())] {
        let cfg = AmgConfig {
            points_per_side: Some(GRID),
            ..cfg
        };
        let mut generator = SamAutomaticMaskGenerator::new(sam.clone(), cfg).expect("generator");
        let kept = generator.generate(&img).expect("generate").len();
        println!(
            "amg_grid32/{name}: {kept} masks kept of {}",
            GRID * GRID * 3
        );
        g.bench_function(name, |b| {
            b.iter(|| generator.generate(&img).expect("generate"))
        });
    }
    let mut predictor = SamPredictor::new(sam);
    g.throughput(Throughput::Elements(1));
    g.bench_function("tiny_encoder", |b| {
        b.iter(|| predictor.set_image(&img).expect("set_image"))
    });
    if std::env::var("SEGANY_BENCH_AMG_FULL").is_ok_and(|v| v == "1") {
        let full = Sam::from_store(
            TensorStore::from_tensors(vit_b),
            None,
            &Device::Cpu,
            DType::F32,
        )
        .expect("ViT-B");
        let mut generator =
            SamAutomaticMaskGenerator::new(full, AmgConfig::default()).expect("generator");
        g.throughput(Throughput::Elements((GRID * GRID * 3) as u64));
        g.measurement_time(Duration::from_secs(120));
        g.bench_function("vit_b_total", |b| {
            b.iter(|| generator.generate(&img).expect("generate"))
        });
    }
    g.finish();
}

/// `SEGANY_BENCH_AMG_ONCE`: single timed runs, written as JSON.
fn once(path: &str) {
    let sam = tiny_encoder_sam(&vit_b_weights());
    let img = image();
    let mut predictor = SamPredictor::new(sam.clone());
    let mut enc: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            predictor.set_image(&img).expect("set_image");
            t.elapsed().as_secs_f64()
        })
        .collect();
    enc.sort_by(f64::total_cmp);
    let configs = std::env::var("SEGANY_BENCH_AMG_CONFIGS").unwrap_or_else(|_| "keep_all".into());
    let mut out = serde_json::Map::new();
    out.insert("tiny_encoder_s".into(), enc[1].into());
    for name in configs.split(',') {
        let cfg = match name {
            "default" => AmgConfig::default(),
            "keep_all" => keep_all(),
            "upscale_all" => upscale_all(),
            other => panic!("SEGANY_BENCH_AMG_CONFIGS: unknown setting {other:?}"),
        };
        let mut generator = SamAutomaticMaskGenerator::new(sam.clone(), cfg).expect("generator");
        let t = Instant::now();
        let kept = generator.generate(&img).expect("generate").len();
        let total = t.elapsed().as_secs_f64();
        println!(
            "amg_grid32/{name}: {kept} masks kept of {}, {total:.2} s",
            GRID * GRID * 3
        );
        out.insert(
            name.into(),
            serde_json::json!({"total_s": total, "encoder_excluded_s": total - enc[1], "kept": kept}),
        );
    }
    std::fs::write(path, serde_json::Value::Object(out).to_string()).expect("write JSON");
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(path) = std::env::var("SEGANY_BENCH_AMG_ONCE") {
        once(&path);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
