//! SAM and MobileSAM in f16 and bf16 against the official f32 outputs (the fixtures of
//! `sam_parity` and `mobilesam_parity`), on the device under test: `SEGANY_TEST_DEVICE`
//! (`cpu`, `cuda[:N]`, `metal[:N]`) when set, else the best one compiled in. On a machine with
//! no GPU this runs on the CPU; with `--features cuda` on a CUDA machine it checks the GPU
//! kernels. (The f32 parity tests, `sam_parity`, `mobilesam_parity` and `amg_parity`, run on the
//! same device and keep their 1e-4 tolerances there.)
//!
//! Weights and activations are stored in the half dtype; products and reductions accumulate in
//! f32 (cuBLAS, candle's CPU products, segany's softmax and LayerNorm). Tolerances, per dtype,
//! leave 2–3× room over what was measured (see `Tolerances::for_dtype`). bf16 weights are
//! refused on the CPU (candle has no CPU bf16 product); there the bf16 tests check the refusal.

mod common;

use candle_core::DType;
use common::{
    check_mobilesam_cases, check_prompt_case_agreeing, expected, fixture, get, rel_err,
    stored_embedding_channels, test_device,
};
use segany::core::image::load_rgb;
use segany::{Sam, SamPredictor};

/// Limits for one dtype: embedding and low-res logits relative to the reference's std, IoU
/// predictions absolute, and the minimum fraction of pixels on which each full-resolution mask
/// agrees with the reference.
struct Tolerances {
    embedding: f64,
    logits: f64,
    iou: f64,
    agreement: f64,
}

impl Tolerances {
    fn for_dtype(dtype: DType) -> Self {
        match dtype {
            // Largest errors measured on these fixtures (CPU and an H100): embedding 1.1e-2,
            // logits 2.9e-2, IoU 2.2e-3, masks agreeing on ≥ 99.84%. (Before the CPU softmax
            // summed in f32, MobileSAM's logits were off by 0.25.)
            DType::F16 => Tolerances {
                embedding: 3e-2,
                logits: 8e-2,
                iou: 6e-3,
                agreement: 0.995,
            },
            // On an H100 (the CPU refuses bf16 weights): embedding 9.7e-2, logits 0.26, IoU
            // 1.6e-2, masks agreeing on ≥ 99.1%. bf16 keeps 8 significant bits; official
            // segment-anything cast to bf16 is as far from its f32 (benches/gpu.rs).
            DType::BF16 => Tolerances {
                embedding: 0.3,
                logits: 0.6,
                iou: 5e-2,
                agreement: 0.97,
            },
            _ => Tolerances {
                embedding: 1e-4,
                logits: 1e-4,
                iou: 1e-4,
                agreement: 0.999,
            },
        }
    }
}

const SAM_CASES: [&str; 5] = ["point", "two_points", "box", "box_point", "mask_point"];

/// Loads `model` in `dtype` on the device under test; `None` where that is bf16 on the CPU,
/// after checking that the refusal says why.
fn load(model: &str, dtype: DType) -> Option<Sam> {
    let device = test_device();
    let loaded = Sam::load(fixture(model).to_str().unwrap(), &device, dtype);
    if device.is_cpu() && dtype == DType::BF16 {
        let Err(err) = loaded else {
            panic!("bf16 weights on the CPU should be refused")
        };
        let err = err.to_string();
        assert!(
            err.contains("bf16") && err.contains("set_cpu_matmul"),
            "{err}"
        );
        println!("NOTICE: bf16 weights are refused on the CPU (checked); run on a GPU for bf16");
        return None;
    }
    Some(loaded.expect("load model"))
}

fn check_sam(model: &str, expected_file: &str, dtype: DType) {
    let device = test_device();
    let tol = Tolerances::for_dtype(dtype);
    let Some(sam) = load(model, dtype) else {
        return;
    };
    assert_eq!(sam.dtype(), dtype);
    let exp = expected(expected_file);
    let mut predictor = SamPredictor::new(sam);
    let label = format!("{model} {dtype:?} on {device:?}");
    for image in ["chelsea", "camera"] {
        let img = load_rgb(fixture(&format!("sam/images/{image}.png"))).unwrap();
        predictor.set_image(&img).unwrap();
        let emb = &predictor.embedding().unwrap().features;
        assert_eq!(emb.dtype(), dtype, "the embedding keeps the model's dtype");
        let e = rel_err(emb, &get(&exp, &format!("{image}.embedding")));
        println!("{label} {image}: embedding rel err {e:.2e}");
        assert!(e < tol.embedding, "{label} {image}: embedding rel err {e}");
        for case in SAM_CASES {
            let key = format!("{image}.{case}");
            let tols = (tol.logits, tol.iou, tol.agreement);
            check_prompt_case_agreeing(&predictor, &exp, &key, &label, tols);
        }
    }
}

fn check_mobilesam(dtype: DType) {
    let device = test_device();
    let tol = Tolerances::for_dtype(dtype);
    let Some(sam) = load("mobilesam/mobile_sam_reduced.safetensors", dtype) else {
        return;
    };
    let exp = expected("mobilesam/expected.safetensors");
    let mut predictor = SamPredictor::new(sam);
    let label = format!("mobilesam {dtype:?} on {device:?}");
    let img = load_rgb(fixture("sam/images/chelsea.png")).unwrap();
    predictor.set_image(&img).unwrap();
    let emb = &predictor.embedding().unwrap().features;
    let (ours, reference, _) = stored_embedding_channels(emb, &exp);
    let e = rel_err(&ours, &reference);
    println!("{label}: embedding rel err {e:.2e}");
    assert!(e < tol.embedding, "{label}: embedding rel err {e}");
    let tols = (tol.logits, tol.iou, tol.agreement);
    check_mobilesam_cases(&predictor, &exp, &label, tols);
}

#[test]
fn sam_meta_layout_f16() {
    check_sam(
        "sam/sam_tiny_meta.safetensors",
        "sam/expected_meta.safetensors",
        DType::F16,
    );
}

#[test]
fn sam_meta_layout_bf16() {
    check_sam(
        "sam/sam_tiny_meta.safetensors",
        "sam/expected_meta.safetensors",
        DType::BF16,
    );
}

#[test]
fn sam_transformers_layout_bf16() {
    check_sam(
        "sam/sam_tiny_hf",
        "sam/expected_hf.safetensors",
        DType::BF16,
    );
}

#[test]
fn mobilesam_f16() {
    check_mobilesam(DType::F16);
}

#[test]
fn mobilesam_bf16() {
    check_mobilesam(DType::BF16);
}
