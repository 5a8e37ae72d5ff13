//! Readers and `prepare` against the miniature datasets of
//! `tools/fixtures/data_refer.py`, whose expected outputs come from a
//! restatement of SSP-SAM's `data_process.py` / `grefcoco_data_process.py`
//! run with pycocotools, `json.dump` and `np.save`.

use std::path::{Path, PathBuf};

use segany_data::npy::read_npy;
use segany_data::refer::Refer;
use segany_data::sspsam::{prepare, PreparedAnns};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data/refer")
}

/// A fresh temporary directory, unique per call (tests run in parallel).
fn tmp(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("segany-data-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn check_prepare(dataset: &str, split_by: &str) {
    check_prepare_at(&root(), dataset, split_by, dataset);
}

/// `prepare` on `data_root/<dataset>/…` against `expected/<key>/`.
fn check_prepare_at(data_root: &Path, dataset: &str, split_by: &str, key: &str) {
    let refer = Refer::load(data_root, dataset, split_by).unwrap();
    let out = tmp(&format!("{key}-{split_by}"));
    let report = prepare(&refer, split_by, &out, true, false).unwrap();
    let exp = root().join("expected").join(key);
    let want = std::fs::read(exp.join(format!("anns/{dataset}.json"))).unwrap();
    let got = std::fs::read(&report.anns_path).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want),
        "{dataset} anns json differs"
    );
    let (em, gm) = (
        exp.join("masks").join(dataset),
        out.join("masks").join(dataset),
    );
    assert_eq!(files(&gm), files(&em), "{dataset} mask files");
    for f in files(&em) {
        let (a, b) = (
            std::fs::read(gm.join(&f)).unwrap(),
            std::fs::read(em.join(&f)).unwrap(),
        );
        assert!(a == b, "{dataset} mask {f} differs");
    }
    assert!(out.join("anns").join(dataset).is_dir());
    // reading back the prepared files gives what was written
    let back = PreparedAnns::read(&report.anns_path).unwrap();
    assert_eq!(back, report.anns);
    assert_eq!(back.to_python_json().as_bytes(), &want[..]);
    let first = files(&gm).into_iter().next().unwrap();
    let m = read_npy(&gm.join(&first)).unwrap();
    let id: i64 = first.trim_end_matches(".npy").parse().unwrap();
    assert_eq!(m, refer.mask(id).unwrap());
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn prepare_refcoco_unc_matches_data_process() {
    check_prepare("refcoco", "unc");
}

#[test]
fn prepare_refcocog_umd_matches_data_process() {
    check_prepare("refcocog", "umd");
}

#[test]
fn prepare_refclef_unc_rle_matches_data_process() {
    check_prepare("refclef", "unc");
}

#[test]
fn prepare_grefcoco_matches_grefcoco_data_process() {
    check_prepare("grefcoco", "unc");
}

fn check_samples(dataset: &str, split_by: &str) {
    check_samples_at(&root(), dataset, split_by, dataset);
}

/// Per-sentence samples of `data_root/<dataset>/…` against
/// `expected/<key>_samples.json` (every split listed there, empty ones too).
fn check_samples_at(data_root: &Path, dataset: &str, split_by: &str, key: &str) {
    let refer = Refer::load(data_root, dataset, split_by).unwrap();
    let path = root().join(format!("expected/{key}_samples.json"));
    let want: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let gref = dataset == "grefcoco";
    let mut n = 0;
    for (split, rows) in want.as_object().unwrap() {
        let got = refer.samples(split).unwrap();
        let rows = rows.as_array().unwrap();
        assert_eq!(got.len(), rows.len(), "{dataset} {split}");
        for (g, w) in got.iter().zip(rows) {
            assert_eq!(g.ref_id, w["ref_id"].as_i64().unwrap());
            assert_eq!(g.image_id, w["image_id"].as_i64().unwrap());
            assert_eq!(g.sent_id, w["sent_id"].as_i64().unwrap());
            assert_eq!(g.sent, w["sent"].as_str().unwrap());
            assert_eq!(g.raw, w["raw"].as_str().unwrap());
            assert_eq!(g.split, w["split"].as_str().unwrap());
            let wb: Vec<f64> = w["bbox"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            if gref {
                let ann: Vec<i64> = w["ann_id"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap())
                    .collect();
                assert_eq!(g.no_target(), ann == [-1]);
                match g.bbox {
                    None => assert_eq!(wb, vec![0.0; 4]),
                    Some(b) => assert_eq!(vec![b[0], b[1], b[0] + b[2], b[1] + b[3]], wb),
                }
                if !g.no_target() {
                    assert_eq!(g.ann_ids, ann);
                }
            } else {
                assert_eq!(g.ann_ids, vec![w["ann_id"].as_i64().unwrap()]);
                assert_eq!(g.category_ids, vec![w["category_id"].as_i64().unwrap()]);
                assert_eq!(g.bbox.unwrap().to_vec(), wb);
            }
            n += 1;
        }
    }
    assert!(n > 0);
}

#[test]
fn refcoco_samples_match_refer_api() {
    check_samples("refcoco", "unc");
}

#[test]
fn refclef_samples_match_refer_api_including_test_and_test_ab() {
    check_samples("refclef", "unc");
}

#[test]
fn grefcoco_samples_match_grefer_api() {
    check_samples("grefcoco", "unc");
}

#[test]
fn prepare_refcocog_google_matches_data_process() {
    check_prepare_at(&root(), "refcocog", "google", "refcocog_google");
}

#[test]
fn refcocog_google_samples_match_refer_api() {
    // includes `test`, which selects nothing under google's train/val split
    check_samples_at(&root(), "refcocog", "google", "refcocog_google");
}

#[test]
fn prepare_refclef_berkeley_matches_data_process() {
    check_prepare_at(&root(), "refclef", "berkeley", "refclef_berkeley");
}

#[test]
fn refclef_berkeley_samples_match_refer_api() {
    // includes `testA`, which selects nothing under berkeley's train/val/test
    check_samples_at(&root(), "refclef", "berkeley", "refclef_berkeley");
}

#[test]
fn refcocog_umd_samples_match_refer_api() {
    check_samples("refcocog", "umd");
}

#[test]
fn prepare_refcoco_plus_unc_matches_data_process() {
    check_prepare("refcoco+", "unc");
}

#[test]
fn refcoco_plus_samples_match_refer_api() {
    check_samples("refcoco+", "unc");
}

fn pickle_root() -> PathBuf {
    root().join("pickle_root")
}

#[test]
fn prepare_grefcoco_from_pickle_matches_grefcoco_data_process() {
    // pickle_root/grefcoco holds grefs(unc).p and no JSON
    assert!(!pickle_root().join("grefcoco/grefs(unc).json").exists());
    check_prepare_at(&pickle_root(), "grefcoco", "unc", "grefcoco");
}

#[test]
fn grefcoco_samples_from_pickle_match_grefer_api() {
    check_samples_at(&pickle_root(), "grefcoco", "unc", "grefcoco");
}

#[test]
fn grefcoco_pickle_and_json_give_the_same_refs() {
    let p = Refer::load(&pickle_root(), "grefcoco", "unc").unwrap();
    let j = Refer::load(&root(), "grefcoco", "unc").unwrap();
    assert_eq!(p.refs(), j.refs());
}

#[test]
fn grefcoco_pickle_wins_over_json() {
    // grefer.py loads grefs(unc).p when it exists; the JSON is not read
    let d = tmp("grefcoco-both");
    let g = d.join("grefcoco");
    std::fs::create_dir_all(&g).unwrap();
    for f in ["grefs(unc).p", "instances.json"] {
        std::fs::copy(pickle_root().join("grefcoco").join(f), g.join(f)).unwrap();
    }
    std::fs::write(g.join("grefs(unc).json"), b"not json").unwrap();
    let r = Refer::load(&d, "grefcoco", "unc").unwrap();
    let j = Refer::load(&root(), "grefcoco", "unc").unwrap();
    assert_eq!(r.refs(), j.refs());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn unknown_split_is_an_error() {
    let refer = Refer::load(&root(), "refcoco", "unc").unwrap();
    assert!(refer.samples("testD").is_err());
    let g = Refer::load(&root(), "grefcoco", "unc").unwrap();
    assert!(g.samples("test").is_err());
}
