//! Full-size SAM parity (ignored: needs `tools/fixtures/sam_fullsize_check.py` output).
//!
//! ```text
//! python tools/fixtures/sam_fullsize_check.py --out /tmp/sam_fullsize --hf
//! SAM_FULLSIZE_DIR=/tmp/sam_fullsize cargo test --release --test sam_fullsize -- --ignored --nocapture
//! ```

mod common;

use candle_core::{DType, Device, Tensor};
use common::{fixture, max_abs, rel_err};
use segany::core::image::load_rgb;
use segany::core::TensorStore;
use segany::{BinaryMask, Prompt, Sam, SamPredictor};
use std::path::PathBuf;

fn dir() -> Option<PathBuf> {
    let d = std::env::var_os("SAM_FULLSIZE_DIR").map(PathBuf::from);
    if d.is_none() {
        eprintln!(
            "SAM_FULLSIZE_DIR not set: run tools/fixtures/sam_fullsize_check.py first; skipping"
        );
    }
    d
}

fn run(model: PathBuf, expected: PathBuf, cases: &[(&str, Prompt, bool)]) {
    let exp = TensorStore::load(&expected).expect("expected file");
    let t = std::time::Instant::now();
    let sam = Sam::load(model.to_str().unwrap(), &Device::Cpu, DType::F32).expect("load");
    println!(
        "{}: {:?} loaded in {:?}",
        model.display(),
        sam.config().preset_name(),
        t.elapsed()
    );
    let mut p = SamPredictor::new(sam);
    let t = std::time::Instant::now();
    p.set_image(&load_rgb(fixture("sam/images/chelsea.png")).unwrap())
        .unwrap();
    println!("encoded in {:?}", t.elapsed());
    let e = rel_err(
        &p.embedding().unwrap().features,
        exp.get("embedding").unwrap(),
    );
    println!("embedding rel err {e:.2e}");
    assert!(e < 1e-4);
    for (name, prompt, mm) in cases {
        let pred = p.predict(prompt, *mm).unwrap();
        let e = rel_err(
            &pred.low_res_logits,
            exp.get(&format!("{name}.low_res")).unwrap(),
        );
        let iou = Tensor::new(pred.scores.as_slice(), &Device::Cpu).unwrap();
        let ie = max_abs(&iou, exp.get(&format!("{name}.iou")).unwrap());
        println!("{name}: low-res rel err {e:.2e}, iou abs err {ie:.2e}");
        assert!(e < 1e-4 && ie < 1e-4);
        if let Some(m) = exp.get(&format!("{name}.masks")) {
            for (j, mask) in pred.masks.iter().enumerate() {
                let r = m.get(j).unwrap();
                let (h, w) = r.dims2().unwrap();
                let r = BinaryMask::new(h, w, r.flatten_all().unwrap().to_vec1().unwrap()).unwrap();
                let agree = mask.agreement(&r).unwrap();
                println!("{name} mask {j}: agreement {agree:.6}");
                assert!(agree >= 0.999);
            }
        }
    }
}

#[test]
#[ignore]
fn full_size_meta_layout_matches_segment_anything() {
    let Some(d) = dir() else { return };
    let point = Prompt::new().foreground(230.5, 149.25);
    let bx = [150.0, 60.5, 330.0, 280.0];
    run(
        d.join("model_meta.safetensors"),
        d.join("expected.safetensors"),
        &[
            ("point", point.clone(), true),
            ("box", Prompt::new().with_box(bx), false),
            ("box_point", point.with_box(bx), true),
        ],
    );
}

#[test]
#[ignore]
fn full_size_transformers_layout_matches_sam_model() {
    let Some(d) = dir() else { return };
    if !d.join("hf").is_dir() {
        eprintln!(
            "no hf/ in {}: rerun the script with --hf; skipping",
            d.display()
        );
        return;
    }
    run(
        d.join("hf"),
        d.join("expected_hf.safetensors"),
        &[("point", Prompt::new().foreground(230.5, 149.25), true)],
    );
}
