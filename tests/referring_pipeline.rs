//! The SSP-SAM pipeline end to end on random weights (SAM ViT-B, CLIP ViT-B/16, the 224 head):
//! shapes, the original-resolution mask, the box mapping, text errors and per-image caching.
//! Numerical parity of the head is covered by `crates/segany-ssp/tests/golden.rs`.

mod common;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use segany::core::Error;
use segany::referring::{ReferringOptions, ReferringSegmenter};
use segany::{Sam, SamConfig};
use segany_clip::{ClipConfig, ClipModel, ClipTokenizer};
use segany_ssp::{SspSam, SspSamConfig};

fn pipeline() -> ReferringSegmenter {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let sam = Sam::new(
        &SamConfig::vit_b(),
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
    )
    .expect("SAM");
    let vm = VarMap::new();
    let clip = ClipModel::new(
        &ClipConfig::vit_b_16(),
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
    )
    .expect("CLIP");
    let vm = VarMap::new();
    let ssp = SspSam::new(
        &SspSamConfig::vit_b16_224(),
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
    )
    .expect("SSP");
    let tok = ClipTokenizer::openai().expect("tokenizer");
    ReferringSegmenter::from_parts(sam, clip, tok, ssp, ReferringOptions::default())
        .expect("parts fit")
}

#[test]
fn pipeline_on_random_weights() {
    let mut seg = pipeline();
    let img = image::RgbImage::from_fn(300, 200, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    assert!(matches!(seg.segment_text("a dog"), Err(Error::NoImage)));
    seg.set_image(&img).expect("set_image");
    let first = seg.image_timings().expect("timings");
    // Identical pixels: nothing is re-encoded.
    seg.set_image(&img).expect("set_image");
    assert_eq!(seg.image_timings(), Some(first));

    let r = seg.segment_text("The Dog on the LEFT").expect("segment");
    assert_eq!((r.mask.height(), r.mask.width()), (200, 300));
    assert_eq!(r.logits_512.dims(), &[512, 512]);
    let [x0, y0, x1, y1] = r.box_xyxy;
    assert!(0.0 <= x0 && x0 <= x1 && x1 <= 300.0, "{:?}", r.box_xyxy);
    assert!(0.0 <= y0 && y0 <= y1 && y1 <= 200.0, "{:?}", r.box_xyxy);

    // Through the evaluation trait: the original-size mask, plus the native 512 frame
    // (logits > 0) that SSP-SAM scores.
    let sample = segany_data::refer::Sample {
        ref_id: 0,
        ann_ids: vec![],
        image_id: 0,
        category_ids: vec![],
        split: "val".into(),
        sent_id: 0,
        sent: "the dog on the left".into(),
        raw: "The Dog on the LEFT".into(),
        bbox: None,
        file_name: String::new(),
    };
    let input = segany_data::eval::SegmenterInput {
        image: &img,
        sentence: "The Dog on the LEFT",
        sample: &sample,
    };
    let p =
        segany_data::eval::ReferringSegmenter::segment(&mut seg, &input).expect("trait segment");
    assert_eq!(p.mask.as_slice(), r.mask.data());
    let frame = p.frame_mask.expect("native 512 frame");
    let logits: Vec<f32> = r.logits_512.flatten_all().unwrap().to_vec1().unwrap();
    let expect: Vec<u8> = logits.iter().map(|&v| u8::from(v > 0.0)).collect();
    assert_eq!(frame.as_slice(), expect.as_slice());

    // SSP-SAM's text: lower-cased, "." appended.
    let ids = seg.token_ids("A Dog").expect("ids");
    assert_eq!(ids.len(), 77);
    assert_eq!(ids[0], 49406);
    let eot = ids.iter().position(|&i| i == 49407).expect("EOT");
    assert_eq!(ids[eot - 1], 269, "'.' before EOT: {:?}", &ids[..eot + 1]);
    assert_eq!(ids, seg.token_ids("a dog").expect("ids"));

    assert!(matches!(
        seg.segment_text("   "),
        Err(Error::InvalidPrompt(_))
    ));
    let long = "dog ".repeat(100);
    assert!(matches!(
        seg.segment_text(&long),
        Err(Error::InvalidPrompt(_))
    ));
    seg.set_options(ReferringOptions {
        truncate: true,
        ..Default::default()
    });
    let ids = seg.token_ids(&long).expect("truncated");
    assert_eq!(ids[76], 49407);
    seg.segment_text(&long).expect("segment truncated");
}

/// Random weights with sane scales, whatever the VarMap's init was (tensors fetched with plain
/// `vb.get` start at zero): matrices and kernels N(0, 1/fan_in), 1-D `weight`s (norm gains)
/// 1 + N(0, 0.1), SSP-SAM's Gaussian scale/sigma near their init, everything else (biases)
/// N(0, 0.1).
fn randomize(vm: &VarMap) {
    for (name, var) in vm.data().lock().expect("varmap").iter() {
        let t = var.as_tensor();
        let dims = t.dims();
        let (mean, std) = if name.ends_with("tf_scale") {
            (1.0, 0.1) // SSP-SAM's init: scale 1, sigma 0.5 (a tiny sigma zeroes the visual path)
        } else if name.ends_with("tf_sigma") {
            (0.5, 0.05)
        } else if dims.len() >= 2 {
            let fan_in = t.elem_count() / dims[0];
            (0.0, 1.0 / (fan_in as f32).sqrt())
        } else if name.ends_with("weight") {
            (1.0, 0.1)
        } else {
            (0.0, 0.1)
        };
        let r = candle_core::Tensor::randn(mean, std, t.shape(), t.device()).expect("randn");
        var.set(&r).expect("set");
    }
}

/// Builds a model twice, on each of `devices` with the same weights: the first build creates
/// the variables of a VarMap, which are then randomised; the second build reads those tensors
/// (models may derive fused or transposed weights when built, so randomising after a single
/// build would leave those at their init).
fn random_models<M, const N: usize>(
    devices: [&Device; N],
    build: impl Fn(VarBuilder) -> candle_core::Result<M>,
) -> [M; N] {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    build(vb).expect("first build");
    randomize(&vm);
    let tensors: std::collections::HashMap<String, candle_core::Tensor> = vm
        .data()
        .lock()
        .expect("varmap")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    devices.map(|dev| {
        build(VarBuilder::from_tensors(tensors.clone(), DType::F32, dev)).expect("second build")
    })
}

/// A narrow SAM encoder (64 wide, 2 blocks) that still embeds 256×64×64 at 1024 px, so the
/// pipeline fits the SSP-SAM head while encoding stays cheap; all weights random.
fn small_random_pipeline() -> ReferringSegmenter {
    let [p] = small_random_pipelines([&Device::Cpu]);
    p
}

/// [`small_random_pipeline`] on several devices with the same weights.
fn small_random_pipelines<const N: usize>(devices: [&Device; N]) -> [ReferringSegmenter; N] {
    let mut cfg = SamConfig::vit_b();
    cfg.vision_config.hidden_size = 64;
    cfg.vision_config.num_hidden_layers = 2;
    cfg.vision_config.num_attention_heads = 2;
    cfg.vision_config.mlp_dim = Some(128);
    cfg.vision_config.global_attn_indexes = vec![1];
    let sams = random_models(devices, |vb| Sam::new(&cfg, vb));
    let mut ccfg = ClipConfig::vit_b_16();
    ccfg.vision.layers = 7;
    ccfg.text.layers = 2;
    let clips = random_models(devices, |vb| ClipModel::new(&ccfg, vb));
    let ssps = random_models(devices, |vb| SspSam::new(&SspSamConfig::vit_b16_224(), vb));
    let mut parts = sams.into_iter().zip(clips).zip(ssps);
    std::array::from_fn(|_| {
        let ((sam, clip), ssp) = parts.next().expect("one set per device");
        let tok = ClipTokenizer::openai().expect("tokenizer");
        ReferringSegmenter::from_parts(sam, clip, tok, ssp, ReferringOptions::default())
            .expect("parts fit")
    })
}

/// The whole referring pipeline (SAM, CLIP, SSP-SAM head, decoder, post-processing) on the
/// device under test (`SEGANY_TEST_DEVICE`, e.g. `cuda`) against the CPU on the same random
/// weights: 512² logits within 1e-3 of their std, boxes within 0.05 px, masks agreeing on
/// ≥ 99.9% of the pixels. Without a GPU there is nothing to compare, and the test says so.
#[test]
fn device_pipeline_matches_cpu() {
    let dev = common::test_device();
    if dev.is_cpu() {
        println!("NOTICE: the device under test is the CPU (build with --features cuda and set SEGANY_TEST_DEVICE=cuda); nothing to compare");
        return;
    }
    let [mut cpu, mut gpu] = small_random_pipelines([&Device::Cpu, &dev]);
    let img = image::RgbImage::from_fn(320, 240, |x, y| {
        image::Rgb([
            (x * 5 % 256) as u8,
            (y * 9 % 256) as u8,
            ((x + y) % 256) as u8,
        ])
    });
    cpu.set_image(&img).expect("set_image on the CPU");
    gpu.set_image(&img).expect("set_image on the device");
    for text in ["the cat", "a man on the left wearing a red hat"] {
        let a = cpu.segment_text(text).expect("CPU");
        let b = gpu.segment_text(text).expect("device");
        let reference = a.logits_512.to_dtype(DType::F32).expect("f32");
        let got = b.logits_512.to_device(&Device::Cpu).expect("host");
        let std = reference
            .flatten_all()
            .and_then(|t| t.var(0)?.sqrt()?.to_scalar::<f32>())
            .expect("std");
        let rel = max_abs(&got, &reference) / std.max(1e-12);
        let dbox = a
            .box_xyxy
            .iter()
            .zip(&b.box_xyxy)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        let agree = a.mask.agreement(&b.mask).expect("same size");
        println!("{text:?}: logits rel err {rel:.2e}, box max|Δ| {dbox:.2e} px, mask agreement {agree:.6}");
        assert!(rel < 1e-3, "{text:?}: logits rel err {rel}");
        assert!(dbox < 0.05, "{text:?}: box differs by {dbox} px");
        assert!(agree >= 0.999, "{text:?}: masks agree on {agree}");
    }
}

fn max_abs(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

/// Several expressions in one batch (and in chunks) give what each gives alone: the padded
/// token positions, the per-sample attention masks and the shared image embedding must not
/// leak across the batch.
#[test]
fn batched_expressions_match_one_at_a_time() {
    let mut seg = small_random_pipeline();
    let img = image::RgbImage::from_fn(320, 240, |x, y| {
        image::Rgb([
            (x * 7 % 256) as u8,
            (y * 3 % 256) as u8,
            ((x ^ y) % 256) as u8,
        ])
    });
    seg.set_image(&img).expect("set_image");
    let texts = [
        "the cat",
        "a man on the left wearing a red hat and holding an umbrella",
        "dog",
    ];
    let single: Vec<_> = texts
        .iter()
        .map(|t| seg.segment_text(t).expect("single"))
        .collect();
    let batch = seg.segment_batch(&texts).expect("batch");
    seg.set_options(ReferringOptions {
        batch_size: 2,
        ..Default::default()
    });
    let chunked = seg.segment_all(&img, &texts).expect("chunked");
    assert_eq!(batch.len(), 3);
    assert_eq!(chunked.len(), 3);
    for (k, s) in single.iter().enumerate() {
        // The expressions must actually differ, or this test proves nothing.
        if k > 0 {
            assert!(max_abs(&s.logits_512, &single[0].logits_512) > 1e-3);
        }
        for other in [&batch[k], &chunked[k]] {
            assert_eq!(other.text, s.text);
            // f32 sums in a different order: tolerance 1e-4 abs on logits of std ~O(1).
            let d = max_abs(&other.logits_512, &s.logits_512);
            assert!(d < 1e-4, "#{k}: logits differ by {d}");
            eprintln!("#{k}: batched vs alone, max |Δ logits_512| = {d:e}");
            for (a, b) in other.box_cxcywh.iter().zip(s.box_cxcywh) {
                assert!(
                    (a - b).abs() < 1e-5,
                    "#{k}: box {:?} vs {:?}",
                    other.box_cxcywh,
                    s.box_cxcywh
                );
            }
            let agree = other
                .mask
                .data()
                .iter()
                .zip(s.mask.data())
                .filter(|(a, b)| a == b)
                .count();
            assert!(
                agree as f64 >= 0.9999 * s.mask.data().len() as f64,
                "#{k}: masks differ"
            );
        }
    }
    assert!(seg.segment_batch::<&str>(&[]).expect("empty").is_empty());
    assert!(matches!(
        seg.segment_batch(&["a cat", "  "]),
        Err(Error::InvalidPrompt(_))
    ));
}

/// The pipeline's bf16 switch reaches SAM's encoder, both CLIP towers and the head: on a CPU
/// with AVX-512 BF16 the logits change but the mask stays close (random weights: measured
/// 99.79% agreement, ≥ 99% asserted); switching back to f32 gives the f32 result exactly.
/// Elsewhere the switch reports `false` and changes nothing.
#[test]
fn bf16_switch_reaches_every_model_and_back() {
    use segany::core::nn::bf16_gemm::bf16_supported;
    use segany::core::nn::CpuMatmul;
    let mut seg = small_random_pipeline();
    let img = image::RgbImage::from_fn(320, 240, |x, y| {
        image::Rgb([
            (x * 5 % 256) as u8,
            (y * 9 % 256) as u8,
            ((x + y) % 256) as u8,
        ])
    });
    let run = |seg: &mut ReferringSegmenter| {
        seg.set_image(&img).expect("set_image");
        seg.segment_text("the cat on the left").expect("segment")
    };
    let f32_out = run(&mut seg);
    let on = seg.set_cpu_matmul(CpuMatmul::Bf16).expect("bf16");
    assert_eq!(on, bf16_supported());
    let bf16_out = run(&mut seg);
    let d = max_abs(&bf16_out.logits_512, &f32_out.logits_512);
    let agree = bf16_out
        .mask
        .data()
        .iter()
        .zip(f32_out.mask.data())
        .filter(|(a, b)| a == b)
        .count() as f64
        / f32_out.mask.data().len() as f64;
    eprintln!("bf16 vs f32: max |Δ logits_512| = {d:e}, mask agreement {agree:.6}");
    if on {
        assert!(d > 0.0, "bf16 products should change the logits");
        assert!(agree >= 0.99, "bf16 mask agrees on {agree}");
    } else {
        assert_eq!(d, 0.0);
    }
    assert!(!seg.set_cpu_matmul(CpuMatmul::F32).expect("f32"));
    let back = run(&mut seg);
    assert_eq!(max_abs(&back.logits_512, &f32_out.logits_512), 0.0);
}
