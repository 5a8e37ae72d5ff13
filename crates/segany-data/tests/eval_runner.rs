//! The evaluation runner on the miniature datasets: baselines, resume from
//! JSONL, and missing images counted rather than fatal.

use std::path::{Path, PathBuf};

use segany_data::eval::{evaluate, EvalConfig, GroundTruthBox, Status, WholeImage};
use segany_data::refer::Refer;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data/refer")
}

fn cfg(name: &str, image_root: PathBuf, limit: Option<usize>) -> EvalConfig {
    let dir = std::env::temp_dir().join(format!("segany-eval-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    EvalConfig {
        split: "testA".into(),
        limit,
        image_root,
        results_path: dir.join("r.jsonl"),
        show_progress: false,
    }
}

#[test]
fn whole_image_resumes_and_matches_a_fresh_run() {
    let refer = Refer::load(&root(), "refcoco", "unc").unwrap();
    let images = root().join("images/train2014");
    let c = cfg("resume", images.clone(), Some(3));
    let first = evaluate(&refer, &mut WholeImage, &c).unwrap();
    assert_eq!((first.scored, first.resumed), (3, 0));
    // the JSONL now has 3 records; a longer run reuses them
    let c2 = EvalConfig {
        limit: None,
        ..c.clone()
    };
    let full = evaluate(&refer, &mut WholeImage, &c2).unwrap();
    assert_eq!(full.resumed, 3);
    let fresh = evaluate(&refer, &mut WholeImage, &cfg("fresh", images, None)).unwrap();
    assert_eq!(full.scored, fresh.scored);
    assert_eq!(full.res_original, fresh.res_original);
    assert_eq!(full.res_frame, fresh.res_frame);
    // whole image: I = |G|, U = H*W, so every IoU is below 1
    assert!(full.res_original.miou > 0.0 && full.res_original.miou < 1.0);
    let _ = std::fs::remove_dir_all(c.results_path.parent().unwrap());
}

#[test]
fn missing_images_are_counted_not_fatal() {
    let refer = Refer::load(&root(), "refcoco", "unc").unwrap();
    let c = cfg("missing", PathBuf::from("/nonexistent"), None);
    let r = evaluate(&refer, &mut GroundTruthBox, &c).unwrap();
    assert_eq!(r.scored, 0);
    assert_eq!(r.missing_images, r.selected);
    let text = std::fs::read_to_string(&c.results_path).unwrap();
    let first: segany_data::eval::SampleRecord =
        serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first.status, Status::MissingImage);
    let _ = std::fs::remove_dir_all(c.results_path.parent().unwrap());
}

#[test]
fn gt_box_on_grefcoco_recognises_no_target() {
    let refer = Refer::load(&root(), "grefcoco", "unc").unwrap();
    let c = cfg("gref", root().join("images/train2014"), None);
    let r = evaluate(&refer, &mut GroundTruthBox, &c).unwrap();
    assert!(r.scored > 0);
    // the oracle flags exactly the no-target samples
    assert_eq!(r.gres_original.n_acc, Some(1.0));
    assert_eq!(r.gres_original.t_acc, Some(1.0));
    let _ = std::fs::remove_dir_all(c.results_path.parent().unwrap());
}

/// Whole-image masks at original resolution, but an empty native 512 frame.
struct WholeWithEmptyFrame;

impl segany_data::eval::ReferringSegmenter for WholeWithEmptyFrame {
    fn name(&self) -> String {
        "whole-empty-frame".into()
    }

    fn segment(
        &mut self,
        input: &segany_data::eval::SegmenterInput<'_>,
    ) -> segany_data::Result<segany_data::eval::Prediction> {
        let mut p = WholeImage.segment(input)?;
        let side = segany_data::metrics::SSP_SAM_FRAME;
        p.frame_mask = Some(segany_data::mask::Mask::zeros(side, side));
        Ok(p)
    }
}

#[test]
fn native_frame_masks_are_scored_in_the_512_frame() {
    let refer = Refer::load(&root(), "refcoco", "unc").unwrap();
    let images = root().join("images/train2014");
    let whole = evaluate(&refer, &mut WholeImage, &cfg("whole", images.clone(), None)).unwrap();
    let c = cfg("native", images, None);
    let native = evaluate(&refer, &mut WholeWithEmptyFrame, &c).unwrap();
    assert!(native.scored > 0);
    // Original-resolution scores come from `mask` and are unchanged ...
    assert_eq!(native.res_original, whole.res_original);
    // ... while the 512 frame scores the (empty) native mask: no intersection anywhere.
    assert!(whole.res_frame.miou > 0.0);
    assert_eq!(native.res_frame.miou, 0.0);
    let _ = std::fs::remove_dir_all(c.results_path.parent().unwrap());
}
