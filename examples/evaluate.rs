//! Evaluates a referring segmenter on a RefCOCO-family or gRefCOCO split.
//!
//! ```text
//! cargo run --release --example evaluate -- --data-root DIR --dataset refcoco \
//!     --split-by unc --split val --segmenter gt-box|whole-image|ssp-sam \
//!     [--sam facebook/sam-vit-huge --clip DIR --ssp DIR] [--device cpu|cuda|metal] \
//!     [--image-root DIR/images/train2014] [--limit N] [--output-dir eval_out]
//! ```
//!
//! `ssp-sam` runs the SSP-SAM pipeline (`segany::referring`) and needs `--sam`, `--clip` and
//! `--ssp` as the `refer` example does.
//!
//! Per-sample results stream to `OUT/<dataset>_<split>_<segmenter>.jsonl`
//! (rerunning resumes from it); the final table is printed and written to
//! `OUT/<dataset>_<split>_<segmenter>.json`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use segany_data::eval::{evaluate, EvalConfig, GroundTruthBox, ReferringSegmenter, WholeImage};
use segany_data::refer::Refer;

#[derive(Parser)]
#[command(about = "Evaluate a referring segmenter (RES/GRES metrics)")]
struct Args {
    /// Folder holding <dataset>/refs(<split-by>).p and instances.json.
    #[arg(long)]
    data_root: PathBuf,
    /// refcoco, refcoco+, refcocog, refclef or grefcoco.
    #[arg(long)]
    dataset: String,
    /// unc, google, umd or berkeley.
    #[arg(long)]
    split_by: String,
    /// val, testA, testB, test, ...
    #[arg(long)]
    split: String,
    /// whole-image, gt-box (oracle) or ssp-sam.
    #[arg(long, default_value = "gt-box")]
    segmenter: String,
    /// SAM checkpoint for ssp-sam (hub id, directory or file).
    #[arg(long, default_value = "facebook/sam-vit-huge")]
    sam: String,
    /// CLIP checkpoint for ssp-sam (hub id, directory or file).
    #[arg(long)]
    clip: Option<String>,
    /// SSP-SAM head checkpoint for ssp-sam (directory or file).
    #[arg(long)]
    ssp: Option<PathBuf>,
    /// Device for ssp-sam: cpu, cuda[:N] or metal[:N].
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Image folder (default: DATA/images/train2014, or
    /// DATA/images/saiapr_tc-12 for refclef).
    #[arg(long)]
    image_root: Option<PathBuf>,
    /// Only the first N samples.
    #[arg(long)]
    limit: Option<usize>,
    /// Where the JSONL and JSON results go.
    #[arg(long, default_value = "eval_out")]
    output_dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let refer = Refer::load(&a.data_root, &a.dataset, &a.split_by)
        .with_context(|| format!("loading {} ({})", a.dataset, a.split_by))?;
    let mut seg: Box<dyn ReferringSegmenter> = match a.segmenter.as_str() {
        "whole-image" => Box::new(WholeImage),
        "gt-box" => Box::new(GroundTruthBox),
        "ssp-sam" => {
            let (Some(clip), Some(ssp)) = (&a.clip, &a.ssp) else {
                anyhow::bail!("--segmenter ssp-sam needs --clip and --ssp (and --sam)");
            };
            let device = segany::core::parse_device(&a.device)?;
            Box::new(
                segany::referring::ReferringSegmenter::load(&a.sam, clip, ssp, &device)
                    .context("loading the SSP-SAM pipeline")?,
            )
        }
        other => anyhow::bail!("unknown segmenter {other:?} (whole-image, gt-box, ssp-sam)"),
    };
    let image_root = a.image_root.unwrap_or_else(|| {
        let sub = if a.dataset == "refclef" {
            "saiapr_tc-12"
        } else {
            "train2014"
        };
        a.data_root.join("images").join(sub)
    });
    let stem = format!("{}_{}_{}", a.dataset, a.split, seg.name());
    let cfg = EvalConfig {
        split: a.split.clone(),
        limit: a.limit,
        image_root,
        results_path: a.output_dir.join(format!("{stem}.jsonl")),
        show_progress: true,
    };
    let report = evaluate(&refer, seg.as_mut(), &cfg)?;
    print!("{report}");
    let json_path = a.output_dir.join(format!("{stem}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!(
        "results: {} and {}",
        cfg.results_path.display(),
        json_path.display()
    );
    Ok(())
}
