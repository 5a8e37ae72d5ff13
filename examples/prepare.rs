//! Reproduces SSP-SAM's `data_seg/data_process.py`.
//!
//! ```text
//! cargo run --release --example prepare -- --data-root DIR \
//!     --dataset refcoco|refcoco+|refcocog|refclef|grefcoco \
//!     --split-by unc|google|umd|berkeley --output-dir OUT [--generate-mask]
//! ```
//!
//! Reads `DIR/<dataset>/refs(<split-by>).p` (gRefCOCO: `grefs(<split-by>).p`
//! or `.json`) and `DIR/<dataset>/instances.json`, writes
//! `OUT/anns/<dataset>.json` and, with `--generate-mask`,
//! `OUT/masks/<dataset>/<ref_id>.npy`, byte-identical to the Python script.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use segany_data::refer::Refer;
use segany_data::sspsam::prepare;

#[derive(Parser)]
#[command(about = "Prepare RefCOCO-family data in SSP-SAM's format")]
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
    /// Output folder (anns/ and masks/ are created inside).
    #[arg(long)]
    output_dir: PathBuf,
    /// Also write one .npy mask per ref.
    #[arg(long)]
    generate_mask: bool,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let refer = Refer::load(&a.data_root, &a.dataset, &a.split_by)
        .with_context(|| format!("loading {} ({})", a.dataset, a.split_by))?;
    let report = prepare(&refer, &a.split_by, &a.output_dir, a.generate_mask, true)?;
    for (split, entries) in &report.anns.splits {
        println!("{split}: {} entries", entries.len());
    }
    println!(
        "wrote {} and {} masks",
        report.anns_path.display(),
        report.masks_written
    );
    Ok(())
}
