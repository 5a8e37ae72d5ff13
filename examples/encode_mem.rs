//! Peak resident memory of loading SAM and encoding one 1024² image (issue #7: ≤ 1.3× the
//! weights' file size with ViT-H).
//!
//! `cargo run --release --example encode_mem -- --model sam_vit_h.safetensors [--load-only]`
//!
//! Prints one JSON object: the weights' file size, and after each stage (start, load, encode)
//! the process's `VmHWM` (peak resident set so far), `VmRSS`, `RssAnon` and `RssFile` from
//! `/proc/self/status` (Linux; other systems print nulls), plus the peak's ratio to the file
//! size. After loading, the peak is reset (`5 > /proc/self/clear_refs`) so that the encode
//! stage's `VmHWM` is the peak while encoding alone (`encode_peak_rss`); `peak_rss` is the
//! larger of the two stages' peaks. `benches/compare/mem.sh` runs it next to PyTorch's
//! equivalent.

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use clap::Parser;
use segany::Sam;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// SAM checkpoint (repo id, directory or `.safetensors` file).
    #[arg(long)]
    model: String,
    /// Stop after loading (to separate the loading peak from the encoding peak).
    #[arg(long)]
    load_only: bool,
}

/// `VmHWM`, `VmRSS`, `RssAnon`, `RssFile` in bytes.
fn status() -> Value {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    json!({
        "VmHWM": field("VmHWM:"),
        "VmRSS": field("VmRSS:"),
        "RssAnon": field("RssAnon:"),
        "RssFile": field("RssFile:"),
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let file_size = {
        let p = PathBuf::from(&args.model);
        if p.is_file() {
            Some(std::fs::metadata(&p)?.len())
        } else {
            None
        }
    };
    let mut stages = vec![json!({"stage": "start", "mem": status()})];
    let t = Instant::now();
    let sam = Sam::load(&args.model, &Device::Cpu, DType::F32)
        .with_context(|| format!("loading {}", args.model))?;
    stages.push(json!({"stage": "load", "seconds": t.elapsed().as_secs_f64(), "mem": status()}));
    let load_peak = stages[1]["mem"]["VmHWM"].as_u64().unwrap_or(0);
    let mut encode_peak = None;
    if !args.load_only {
        // Linux: reset VmHWM to the current resident set.
        let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let img = image::RgbImage::from_fn(1024, 1024, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
        });
        let (pixels, _) = segany::core::image::ResizeLongestSide::new(sam.image_size())
            .preprocess(&img, &Device::Cpu)?;
        let t = Instant::now();
        let emb = sam.encode(&pixels)?;
        stages.push(json!({
            "stage": "encode",
            "seconds": t.elapsed().as_secs_f64(),
            "embedding": emb.dims(),
            "mem": status(),
        }));
        if reset {
            encode_peak = stages[2]["mem"]["VmHWM"].as_u64();
        }
    }
    let last_peak = stages
        .last()
        .and_then(|s| s["mem"]["VmHWM"].as_u64())
        .unwrap_or(0);
    let peak = load_peak.max(last_peak);
    let out = json!({
        "model": args.model,
        "file_size": file_size,
        "peak_rss": peak,
        "load_peak_rss": load_peak,
        "encode_peak_rss": encode_peak,
        "peak_over_file": file_size.map(|f| peak as f64 / f as f64),
        "stages": stages,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
