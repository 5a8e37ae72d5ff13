//! The resumable evaluation runner.

use std::collections::HashSet;
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ReferringSegmenter, SampleRecord, SegmenterInput, Status};
use crate::error::{DataError, Result};
use crate::mask::Mask;
use crate::metrics::{
    intersection_union, ssp_sam_frame, GresMetrics, GresSummary, ResMetrics, ResSummary, SampleIou,
    SspSamGresMetrics, SspSamGresSummary, LAVT_THRESHOLDS, SSP_SAM_THRESHOLDS,
};
use crate::progress::progress_bar;
use crate::refer::{Refer, Sample};

/// Settings of [`evaluate`].
#[derive(Clone, Debug)]
pub struct EvalConfig {
    /// Split to evaluate (see [`Refer::ref_ids`]).
    pub split: String,
    /// Evaluate only the first `limit` samples.
    pub limit: Option<usize>,
    /// Directory holding the images named by `instances.json`.
    pub image_root: PathBuf,
    /// JSONL file of per-sample records; existing records are reused.
    pub results_path: PathBuf,
    /// Draw a progress bar.
    pub show_progress: bool,
}

/// Final numbers of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalReport {
    /// Segmenter name.
    pub segmenter: String,
    /// Dataset name.
    pub dataset: String,
    /// Split.
    pub split: String,
    /// Samples selected (after `--limit`).
    pub selected: usize,
    /// Samples scored.
    pub scored: usize,
    /// Samples reused from the JSONL file.
    pub resumed: usize,
    /// Samples skipped for a missing/unreadable image.
    pub missing_images: usize,
    /// Samples skipped for a missing ground-truth mask.
    pub missing_masks: usize,
    /// Samples whose segmenter call failed.
    pub segmenter_errors: usize,
    /// RES at original resolution, Prec@0.5..0.9.
    pub res_original: ResSummary,
    /// RES in SSP-SAM's 512 frame, Prec@0.50:0.05:0.90.
    pub res_frame: ResSummary,
    /// ReLA GRES at original resolution (no-target = flag or empty mask).
    pub gres_original: GresSummary,
    /// SSP-SAM's own rule in the 512 frame.
    pub ssp_sam_frame: SspSamGresSummary,
}

fn score(pred: &Mask, gt: &Mask) -> Result<[u64; 4]> {
    let s = intersection_union(pred, gt)?;
    Ok([
        s.intersection,
        s.union,
        pred.count_nonzero(),
        gt.count_nonzero(),
    ])
}

fn run_one(
    refer: &Refer,
    seg: &mut dyn ReferringSegmenter,
    s: &Sample,
    image_root: &Path,
) -> SampleRecord {
    let mut rec = SampleRecord {
        ref_id: s.ref_id,
        sent_id: s.sent_id,
        status: Status::Ok,
        message: None,
        gt_empty: false,
        pred_no_target: false,
        orig: [0; 4],
        frame: [0; 4],
    };
    let fail = |mut r: SampleRecord, st: Status, e: DataError| {
        r.status = st;
        r.message = Some(e.to_string());
        r
    };
    let path = image_root.join(&s.file_name);
    let image = match image::open(&path) {
        Ok(i) => i.to_rgb8(),
        Err(e) => {
            let e = DataError::Image { path, source: e };
            return fail(rec, Status::MissingImage, e);
        }
    };
    let gt = match refer.mask(s.ref_id) {
        Ok(m) => m.binarized(),
        Err(e) => return fail(rec, Status::MissingMask, e),
    };
    let input = SegmenterInput {
        image: &image,
        sentence: &s.sent,
        sample: s,
    };
    let pred = match seg.segment(&input) {
        Ok(p) => p,
        Err(e) => return fail(rec, Status::SegmenterError, e),
    };
    let scored = score(&pred.mask, &gt).and_then(|orig| {
        let pred_frame = match &pred.frame_mask {
            Some(native) => native.clone(),
            None => ssp_sam_frame(&pred.mask),
        };
        let frame = score(&pred_frame, &ssp_sam_frame(&gt))?;
        Ok((orig, frame))
    });
    match scored {
        Ok((orig, frame)) => {
            rec.orig = orig;
            rec.frame = frame;
            rec.gt_empty = orig[3] == 0;
            rec.pred_no_target = pred.no_target;
            rec
        }
        Err(e) => fail(rec, Status::SegmenterError, e),
    }
}

fn read_existing(path: &Path) -> Result<Vec<SampleRecord>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DataError::io(path, e)),
    };
    let mut out = Vec::new();
    for line in BufReader::new(f).lines() {
        let line = line.map_err(|e| DataError::io(path, e))?;
        // A line cut by an interruption does not parse: it is recomputed.
        if let Ok(r) = serde_json::from_str::<SampleRecord>(&line) {
            out.push(r);
        }
    }
    Ok(out)
}

/// Runs `seg` over a split, streaming one JSONL record per sample to
/// `cfg.results_path` (records already there are reused, so an interrupted
/// run resumes), and summarises the scored samples. Missing images or masks
/// are counted, not fatal.
pub fn evaluate(
    refer: &Refer,
    seg: &mut dyn ReferringSegmenter,
    cfg: &EvalConfig,
) -> Result<EvalReport> {
    let mut samples = refer.samples(&cfg.split)?;
    if let Some(l) = cfg.limit {
        samples.truncate(l);
    }
    let wanted: HashSet<(i64, i64)> = samples.iter().map(|s| (s.ref_id, s.sent_id)).collect();
    let mut records: Vec<SampleRecord> = read_existing(&cfg.results_path)?
        .into_iter()
        .filter(|r| wanted.contains(&(r.ref_id, r.sent_id)))
        .collect();
    let mut seen: HashSet<(i64, i64)> = records.iter().map(|r| (r.ref_id, r.sent_id)).collect();
    let resumed = seen.len();
    if let Some(dir) = cfg.results_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&cfg.results_path)
        .map_err(|e| DataError::io(&cfg.results_path, e))?;
    let bar = progress_bar(samples.len() as u64, &seg.name(), cfg.show_progress);
    bar.inc(resumed as u64);
    for s in &samples {
        if !seen.insert((s.ref_id, s.sent_id)) {
            continue;
        }
        let rec = run_one(refer, seg, s, &cfg.image_root);
        let line = serde_json::to_string(&rec).map_err(|e| DataError::Json {
            path: cfg.results_path.clone(),
            source: e,
        })?;
        writeln!(out, "{line}")
            .and_then(|_| out.flush())
            .map_err(|e| DataError::io(&cfg.results_path, e))?;
        records.push(rec);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(summarise(
        refer,
        seg.name(),
        cfg,
        samples.len(),
        resumed,
        &records,
    ))
}

fn summarise(
    refer: &Refer,
    name: String,
    cfg: &EvalConfig,
    selected: usize,
    resumed: usize,
    records: &[SampleRecord],
) -> EvalReport {
    let (mut ro, mut rf) = (ResMetrics::default(), ResMetrics::default());
    let (mut g, mut sf) = (GresMetrics::default(), SspSamGresMetrics::default());
    let count = |st: Status| records.iter().filter(|r| r.status == st).count();
    for r in records.iter().filter(|r| r.status == Status::Ok) {
        let o = SampleIou {
            intersection: r.orig[0],
            union: r.orig[1],
        };
        let f = SampleIou {
            intersection: r.frame[0],
            union: r.frame[1],
        };
        ro.push(o);
        rf.push(f);
        g.push(o, r.gt_empty, r.pred_no_target || r.orig[2] == 0);
        sf.push(f, r.frame[3], r.frame[2]);
    }
    EvalReport {
        segmenter: name,
        dataset: refer.dataset().to_string(),
        split: cfg.split.clone(),
        selected,
        scored: ro.len(),
        resumed,
        missing_images: count(Status::MissingImage),
        missing_masks: count(Status::MissingMask),
        segmenter_errors: count(Status::SegmenterError),
        res_original: ro.summary(&LAVT_THRESHOLDS),
        res_frame: rf.summary(&SSP_SAM_THRESHOLDS),
        gres_original: g.summary(),
        ssp_sam_frame: sf.summary(),
    }
}

impl fmt::Display for EvalReport {
    /// A plain-text table (percentages).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |v: f64| format!("{:6.2}", 100.0 * v);
        writeln!(
            f,
            "{} on {} {}: {} scored of {} ({} resumed; missing images {}, masks {}, errors {})",
            self.segmenter,
            self.dataset,
            self.split,
            self.scored,
            self.selected,
            self.resumed,
            self.missing_images,
            self.missing_masks,
            self.segmenter_errors
        )?;
        for (label, r) in [
            ("original", &self.res_original),
            ("512 frame", &self.res_frame),
        ] {
            write!(
                f,
                "RES {label:<10} mIoU {} oIoU {}",
                pct(r.miou),
                pct(r.oiou)
            )?;
            for (t, p) in &r.precision {
                write!(f, "  P@{t:.2} {}", pct(*p))?;
            }
            writeln!(f)?;
        }
        let g = &self.gres_original;
        let opt = |v: Option<f64>| v.map(pct).unwrap_or_else(|| "   n/a".into());
        write!(
            f,
            "GRES (ReLA)    gIoU {} cIoU {} N-acc {} T-acc {}",
            pct(g.giou),
            pct(g.ciou),
            opt(g.n_acc),
            opt(g.t_acc)
        )?;
        for (t, p) in &g.precision {
            write!(f, "  Pr@{t:.1} {}", pct(*p))?;
        }
        writeln!(f)?;
        let s = &self.ssp_sam_frame;
        writeln!(
            f,
            "SSP-SAM rule   G_iou {} C_iou {} No_target_acc {} target_acc {}",
            pct(s.giou),
            pct(s.ciou),
            opt(s.no_target_acc),
            opt(s.target_acc)
        )
    }
}
