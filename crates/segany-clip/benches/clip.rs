//! * `clip_vit_b16`: ViT-B/16 image embedding and a batch of 32 texts, with the PyTorch time on
//!   the same work (`tests/fixtures/clip/bench_pytorch.json`, from
//!   `tools/fixtures/clip_bench.py`) printed beside. Weights are zeros: the time does not depend
//!   on their values.
//! * `clip_vit_l14_336`: ViT-L/14@336 image embedding (one 336² image) and one text (77 token
//!   ids), SSP-SAM's main-table CLIP. Zero weights, or the checkpoint directory / file named by
//!   `SEGANY_BENCH_CLIP_L336` (`benches/compare/run.sh` passes the random weights that
//!   transformers and open_clip time in the same run).
//!
//! `cargo bench -p segany-clip --bench clip`

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use criterion::{criterion_group, criterion_main, Criterion};
use segany_clip::io::CheckpointFiles;
use segany_clip::{ClipConfig, ClipModel, ClipTokenizer, TokenizeOptions};
use std::time::Duration;

fn pytorch_times() -> Option<(f64, f64, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/clip/bench_pytorch.json"
    );
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    Some((
        v["image_embedding_vit_b16_s"].as_f64()?,
        v["text_batch32_s"].as_f64()?,
        format!("torch {} on {} threads", v["torch"], v["threads"]),
    ))
}

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let cfg = ClipConfig::vit_b_16();
    let model = match ClipModel::new(&cfg, VarBuilder::zeros(DType::F32, &dev)) {
        Ok(m) => m,
        Err(e) => panic!("building ViT-B/16: {e}"),
    };
    let px = Tensor::zeros((1, 3, 224, 224), DType::F32, &dev).expect("pixels");
    let tok = ClipTokenizer::openai().expect("tokenizer");
    let prompts: Vec<String> = (0..32)
        .map(|i| {
            format!(
                "a photo of a {}, a type of object number {i}.",
                ["dog", "cat", "car", "tree"][i % 4]
            )
        })
        .collect();
    let ids = tok
        .tokenize(&prompts, TokenizeOptions::default(), &dev)
        .expect("ids");
    if let Some((img, txt, what)) = pytorch_times() {
        println!(
            "PyTorch ({what}): ViT-B/16 image embedding {:.1} ms, 32 texts {:.1} ms",
            img * 1e3,
            txt * 1e3
        );
    } else {
        println!("PyTorch times: run tools/fixtures/clip_bench.py to print them here");
    }
    let mut g = c.benchmark_group("clip_vit_b16");
    g.sample_size(10);
    g.bench_function("image_embedding", |b| {
        b.iter(|| model.encode_image(&px).expect("forward"))
    });
    g.bench_function("text_batch_32", |b| {
        b.iter(|| model.encode_text(&ids).expect("forward"))
    });
    g.finish();
}

/// The token ids of benches/compare/refs.py (`CLIP_IDS`), padded to 77.
const IDS: [u32; 8] = [49406, 518, 786, 525, 518, 1823, 269, 49407];

fn bench_l14_336(c: &mut Criterion) {
    let dev = Device::Cpu;
    let model = match std::env::var("SEGANY_BENCH_CLIP_L336") {
        Ok(path) => {
            let files = CheckpointFiles::locate(std::path::Path::new(&path))
                .expect("SEGANY_BENCH_CLIP_L336");
            files.load(&dev).expect("loading SEGANY_BENCH_CLIP_L336").0
        }
        Err(_) => ClipModel::new(
            &ClipConfig::vit_l_14_336(),
            VarBuilder::zeros(DType::F32, &dev),
        )
        .expect("building ViT-L/14@336"),
    };
    let px = Tensor::randn(0f32, 1.0, (1, 3, 336, 336), &dev).expect("pixels");
    let mut ids = vec![0u32; 77];
    ids[..IDS.len()].copy_from_slice(&IDS);
    let ids = Tensor::from_vec(ids, (1, 77), &dev).expect("ids");
    let mut g = c.benchmark_group("clip_vit_l14_336");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("image_embedding", |b| {
        b.iter(|| model.encode_image(&px).expect("forward"))
    });
    // The equivalent of transformers' `get_text_features` / open_clip's `encode_text`: the
    // pooled embedding (computed up to the end-of-text token).
    g.bench_function("text_one", |b| {
        b.iter(|| model.encode_text_embeds(&ids).expect("forward"))
    });
    // Every position's features as well (what SSP-SAM's head reads): all 77 positions.
    g.bench_function("text_one_all_tokens", |b| {
        b.iter(|| model.encode_text(&ids).expect("forward"))
    });
    // The same with bf16 products (`CpuMatmul::Bf16`, AVX-512 BF16 CPUs only), with the
    // cosine similarity of its embeddings to the f32 ones printed.
    let mut half = model.clone();
    if half
        .set_cpu_matmul(segany_core::nn::CpuMatmul::Bf16)
        .expect("bf16 products")
    {
        // `None` where a side is all zeros (the zero weights used without
        // `SEGANY_BENCH_CLIP_L336`): no angle to measure.
        let cos = |a: &Tensor, b: &Tensor| -> Option<f32> {
            let sum = |t: Tensor| t.sum_all()?.to_scalar::<f32>();
            let dot = sum((a * b).expect("product")).expect("dot");
            let na = sum(a.sqr().expect("square")).expect("norm");
            let nb = sum(b.sqr().expect("square")).expect("norm");
            (na > 0.0 && nb > 0.0).then(|| dot / (na * nb).sqrt())
        };
        let show = |c: Option<f32>| match c {
            Some(c) => format!("{c:.6}"),
            None => "undefined (zero weights; set SEGANY_BENCH_CLIP_L336)".into(),
        };
        let img = cos(
            &model.encode_image(&px).expect("f32"),
            &half.encode_image(&px).expect("bf16"),
        );
        let txt = cos(
            &model.encode_text(&ids).expect("f32").tokens,
            &half.encode_text(&ids).expect("bf16").tokens,
        );
        eprintln!(
            "clip_vit_l14_336 bf16 vs f32: image embedding cosine {}, text token features cosine {}",
            show(img),
            show(txt)
        );
        g.bench_function("image_embedding_bf16", |b| {
            b.iter(|| half.encode_image(&px).expect("forward"))
        });
        g.bench_function("text_one_all_tokens_bf16", |b| {
            b.iter(|| half.encode_text(&ids).expect("forward"))
        });
    } else {
        eprintln!("clip_vit_l14_336: no AVX-512 BF16 on this CPU; bf16 rows skipped");
    }
    g.finish();
}

criterion_group!(benches, bench, bench_l14_336);
criterion_main!(benches);
