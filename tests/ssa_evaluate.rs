//! SSA's evaluation (`scripts/evaluation.py`) on hand-built prediction / ground-truth folders,
//! against the numbers of a line-for-line Python reimplementation with mmseg's
//! `intersect_and_union` (tools/fixtures/ssa_eval_fixtures.py).

mod common;

use common::fixture;
use segany::semantic::{evaluate_folder, evaluation_pairs, EvalDataset};
use segany_segformer::{ADE20K_CLASSES, CITYSCAPES_CLASSES};

fn expected(dataset: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("ssa/eval/expected.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()[dataset].clone()
}

fn check(name: &str, dataset: EvalDataset, classes: &[&str]) {
    let root = fixture(&format!("ssa/eval/{name}"));
    let report = evaluate_folder(&root.join("pred"), &root.join("gt"), dataset, classes).unwrap();
    let e = expected(name);
    assert_eq!(report.images as u64, e["images"].as_u64().unwrap());
    for (key, ours) in [("iou", &report.iou), ("acc", &report.acc)] {
        let theirs = e[key].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len());
        for (c, (a, b)) in ours.iter().zip(theirs).enumerate() {
            match b.as_f64() {
                None => assert!(a.is_nan(), "{name} {key}[{c}] = {a}, expected NaN"),
                Some(b) => assert!(
                    (a - b).abs() < 1e-12,
                    "{name} {key}[{c}] = {a}, expected {b}"
                ),
            }
        }
    }
    let close = |a: f64, b: &serde_json::Value| (a - b.as_f64().unwrap()).abs() < 1e-10;
    assert!(
        close(report.miou(), &e["miou"]),
        "{name} mIoU {} vs {}",
        report.miou(),
        e["miou"]
    );
    assert!(
        close(report.macc(), &e["macc"]),
        "{name} mAcc {}",
        report.macc()
    );
    assert!(
        close(report.aacc, &e["aacc"]),
        "{name} aAcc {}",
        report.aacc
    );
    assert!(report.table().contains(classes[0]));
}

#[test]
fn ade20k_folder_matches_reference() {
    check("ade20k", EvalDataset::Ade20k, &ADE20K_CLASSES);
}

#[test]
fn cityscapes_folder_matches_reference() {
    check("cityscapes", EvalDataset::Cityscapes, &CITYSCAPES_CLASSES);
}

#[test]
fn cityscapes_pairs_map_names() {
    let root = fixture("ssa/eval/cityscapes");
    let pairs = evaluation_pairs(
        &root.join("pred"),
        &root.join("gt"),
        EvalDataset::Cityscapes,
    )
    .unwrap();
    assert_eq!(pairs.len(), 3);
    assert!(pairs[0]
        .1
        .ends_with("gt/frankfurt/frankfurt_000000_000019_gtFine_labelTrainIds.png"));
}

#[test]
fn missing_ground_truth_is_named() {
    let root = fixture("ssa/eval/ade20k");
    let err = evaluate_folder(
        &root.join("pred"),
        &root.join("nowhere"),
        EvalDataset::Ade20k,
        &ADE20K_CLASSES,
    )
    .unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
}
