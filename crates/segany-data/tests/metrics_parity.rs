//! Metric cross-checks against the Python references in
//! `tools/fixtures/data_metrics.py` (numpy for LAVT-style RES, ReLA's
//! evaluator bookkeeping, SSP-SAM's torch float32 evaluation, and
//! PIL/torchvision for the 512×512 frame).

use segany_data::mask::{Mask, Rle};
use segany_data::metrics::{
    intersection_union, ssp_sam_frame, GresMetrics, ResMetrics, SspSamGresMetrics, LAVT_THRESHOLDS,
};
use serde_json::Value;

fn fixture() -> Value {
    let path = format!(
        "{}/../../tests/fixtures/data/metrics.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn decode(s: &Value, h: usize, w: usize) -> Mask {
    Rle::from_string(s.as_str().unwrap(), h, w)
        .unwrap()
        .decode()
        .unwrap()
}

fn pairs(v: &Value) -> Vec<(f64, f64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
        .collect()
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b}");
}

#[test]
fn res_gres_and_ssp_sam_metrics_match_python() {
    let fx = fixture();
    let mut res = ResMetrics::default();
    let mut gres = GresMetrics::default();
    let mut ssp = SspSamGresMetrics::default();
    for (i, s) in fx["samples"].as_array().unwrap().iter().enumerate() {
        let (h, w) = (
            s["h"].as_u64().unwrap() as usize,
            s["w"].as_u64().unwrap() as usize,
        );
        let (gt, pred) = (decode(&s["gt"], h, w), decode(&s["pred"], h, w));
        let iu = intersection_union(&pred, &gt).unwrap();
        assert_eq!(iu.intersection, s["I"].as_u64().unwrap(), "sample {i} I");
        assert_eq!(iu.union, s["U"].as_u64().unwrap(), "sample {i} U");
        res.push(iu);
        let gt_nt = gt.count_nonzero() == 0;
        assert_eq!(gt_nt, s["gt_nt"].as_bool().unwrap());
        gres.push(iu, gt_nt, s["pred_nt"].as_bool().unwrap());
        ssp.push(iu, gt.count_nonzero(), pred.count_nonzero());
    }

    let r = res.summary(&LAVT_THRESHOLDS);
    let e = &fx["res_lavt"];
    // numpy sums pairwise; we sum left to right.
    close(r.miou, e["miou"].as_f64().unwrap(), 1e-12, "mIoU");
    assert_eq!(r.oiou, e["oiou"].as_f64().unwrap());
    assert_eq!(r.precision, pairs(&e["precision"]));

    let g = gres.summary();
    let e = &fx["rela"];
    close(g.giou, e["giou"].as_f64().unwrap(), 1e-12, "gIoU");
    assert_eq!(g.ciou, e["ciou"].as_f64().unwrap());
    assert_eq!(g.n_acc, e["n_acc"].as_f64());
    assert_eq!(g.t_acc, e["t_acc"].as_f64());
    assert_eq!(g.precision, pairs(&e["precision"]));
    let conf: Vec<usize> = e["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(g.confusion.to_vec(), conf);

    let s = ssp.summary();
    let e = &fx["ssp_sam"];
    // SSP-SAM sums float32 IoUs in a float32 tensor; we sum them in f64.
    close(s.giou, e["giou"].as_f64().unwrap(), 1e-6, "SSP-SAM G_iou");
    assert_eq!(s.ciou, e["ciou"].as_f64().unwrap());
    assert_eq!(s.no_target_acc, e["no_target_acc"].as_f64());
    assert_eq!(s.target_acc, e["target_acc"].as_f64());
    let ep = pairs(&e["precision"]);
    assert_eq!(s.precision.len(), ep.len());
    for ((t, v), (et, ev)) in s.precision.iter().zip(&ep) {
        assert_eq!((*t as f32, v), (*et as f32, ev), "Mask_Pr@{et}");
    }
}

#[test]
fn ssp_sam_frame_matches_pil_and_torch() {
    let fx = fixture();
    for (i, f) in fx["frames"].as_array().unwrap().iter().enumerate() {
        let (h, w) = (
            f["h"].as_u64().unwrap() as usize,
            f["w"].as_u64().unwrap() as usize,
        );
        let m = decode(&f["mask"], h, w);
        let got = Rle::encode(&ssp_sam_frame(&m)).unwrap().to_string();
        assert_eq!(got, f["frame"].as_str().unwrap(), "frame {i} ({h}x{w})");
    }
}
