//! Automatic mask generation over an image or a folder (segment-anything's
//! `SamAutomaticMaskGenerator`, defaults included).
//!
//! ```text
//! cargo run --release --example automask -- --input photo.jpg --out out/
//! cargo run --release --example automask -- --model ./sam-vit-huge --input images/ \
//!     --points-per-side 64 --crop-n-layers 1 --min-mask-region-area 100 --output-mode coco_rle --out out/
//! ```
//!
//! For every image writes `OUT/<stem>.json` (a list of SA-1B records in the generator's order:
//! `segmentation, area, bbox, predicted_iou, point_coords, stability_score, crop_box`) and
//! `OUT/<stem>.png` (each mask blended in its own colour, largest first, with its prompt point).
//! Images whose JSON already exists are skipped; an image that cannot be read is reported and
//! skipped (the exit status is then 1, after the other images are done).

#[cfg(feature = "accelerate")]
extern crate accelerate_src;
#[cfg(feature = "mkl")]
extern crate intel_mkl_src;

use anyhow::{bail, Context, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use segany::automatic::{AmgConfig, MaskRecord, OutputMode};
use segany::core::image::{list_images, load_rgb};
use segany::core::nn::CpuMatmul;
use segany::core::{parse_cpu_matmul, parse_device, parse_dtype, viz, BinaryMask};
use segany::{Sam, SamAutomaticMaskGenerator};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(about = "Generate masks for whole images with SAM (SamAutomaticMaskGenerator)")]
struct Args {
    /// Hub repo id (owner/name[@revision]), a local directory or a .safetensors file.
    #[arg(long, default_value = "facebook/sam-vit-base")]
    model: String,
    /// An image or a directory of images.
    #[arg(long)]
    input: PathBuf,
    /// Output directory (created if needed).
    #[arg(long)]
    out: PathBuf,
    /// Points sampled along each image side.
    #[arg(long, default_value_t = 32)]
    points_per_side: usize,
    /// Points run through the decoder at once.
    #[arg(long, default_value_t = 64)]
    points_per_batch: usize,
    /// Keep masks whose predicted IoU is above this.
    #[arg(long, default_value_t = 0.88)]
    pred_iou_thresh: f64,
    /// Keep masks whose stability score is at least this.
    #[arg(long, default_value_t = 0.95)]
    stability_score_thresh: f64,
    /// Logit offset of the stability score.
    #[arg(long, default_value_t = 1.0)]
    stability_score_offset: f64,
    /// Box IoU above which NMS drops duplicates within a crop.
    #[arg(long, default_value_t = 0.7)]
    box_nms_thresh: f64,
    /// Extra layers of image crops.
    #[arg(long, default_value_t = 0)]
    crop_n_layers: usize,
    /// Box IoU above which NMS drops duplicates across crops.
    #[arg(long, default_value_t = 0.7)]
    crop_nms_thresh: f64,
    /// Crop overlap as a fraction of the short side.
    #[arg(long, default_value_t = 512.0 / 1500.0)]
    crop_overlap_ratio: f64,
    /// Points per side in crop layer n are divided by this to the power n.
    #[arg(long, default_value_t = 1)]
    crop_n_points_downscale_factor: usize,
    /// Remove holes and islands smaller than this many pixels (0 = off).
    #[arg(long, default_value_t = 0)]
    min_mask_region_area: usize,
    /// binary_mask, uncompressed_rle or coco_rle.
    #[arg(long, default_value = "binary_mask")]
    output_mode: String,
    /// cpu, cuda[:N] or metal[:N].
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Weights dtype: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// CPU products: f32 (default, the reference's arithmetic) or bf16 (opt-in, CPUs with
    /// AVX-512 BF16: the image encoder's products in bf16, ≈ 0.7× the encoder time).
    #[arg(long, default_value = "f32")]
    cpu_matmul: String,
    /// Recompute images whose JSON already exists.
    #[arg(long)]
    overwrite: bool,
}

fn overlay(img: &image::RgbImage, records: &[MaskRecord]) -> Result<image::RgbImage> {
    let mut canvas = img.clone();
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by(|&a, &b| records[b].area.cmp(&records[a].area));
    for i in order {
        let r = &records[i];
        let m = r.segmentation.to_rle()?.decode()?;
        let mask = BinaryMask::new(m.height(), m.width(), m.into_vec())?;
        let color = viz::palette(i);
        viz::blend_mask(&mut canvas, &mask, color, 0.5);
        let [x, y] = r.point_coords[0];
        viz::draw_point(&mut canvas, x as f32, y as f32, 3.0, color);
    }
    Ok(canvas)
}

fn process(
    generator: &mut SamAutomaticMaskGenerator,
    path: &Path,
    json: &Path,
    png: &Path,
) -> Result<usize> {
    let img = load_rgb(path)?;
    let records = generator.generate(&img)?;
    let tmp = json.with_extension("json.partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    serde_json::to_writer(std::io::BufWriter::new(file), &records)
        .with_context(|| format!("writing {}", tmp.display()))?;
    overlay(&img, &records)?
        .save(png)
        .with_context(|| format!("writing {}", png.display()))?;
    // The JSON appears last and atomically: its presence marks the image as done.
    std::fs::rename(&tmp, json).with_context(|| format!("writing {}", json.display()))?;
    Ok(records.len())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let output_mode: OutputMode = args.output_mode.parse()?;
    let config = AmgConfig {
        points_per_side: Some(args.points_per_side),
        points_per_batch: args.points_per_batch,
        pred_iou_thresh: args.pred_iou_thresh,
        stability_score_thresh: args.stability_score_thresh,
        stability_score_offset: args.stability_score_offset,
        box_nms_thresh: args.box_nms_thresh,
        crop_n_layers: args.crop_n_layers,
        crop_nms_thresh: args.crop_nms_thresh,
        crop_overlap_ratio: args.crop_overlap_ratio,
        crop_n_points_downscale_factor: args.crop_n_points_downscale_factor,
        point_grids: None,
        min_mask_region_area: args.min_mask_region_area,
        output_mode,
    };
    let images = list_images(&args.input).context("--input")?;
    if images.is_empty() {
        bail!("--input {}: no images found", args.input.display());
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let device = parse_device(&args.device)?;
    let dtype = parse_dtype(&args.dtype)?;
    let cpu_matmul = parse_cpu_matmul(&args.cpu_matmul)?;
    let sam = Sam::load(&args.model, &device, dtype)
        .with_context(|| format!("loading model {}", args.model))?;
    let mut generator = SamAutomaticMaskGenerator::new(sam, config)?;
    if cpu_matmul == CpuMatmul::Bf16 && !generator.set_cpu_matmul(cpu_matmul)? {
        eprintln!(
            "note: --cpu-matmul bf16 needs an f32 model on a CPU with AVX-512 BF16; using f32"
        );
    }

    let bar = ProgressBar::new(images.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut done, mut skipped, mut failed) = (0usize, 0usize, Vec::new());
    for path in &images {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        bar.set_message(stem.clone());
        let json = args.out.join(format!("{stem}.json"));
        let png = args.out.join(format!("{stem}.png"));
        if json.exists() && !args.overwrite {
            skipped += 1;
            bar.inc(1);
            continue;
        }
        match process(&mut generator, path, &json, &png) {
            Ok(n) => {
                done += 1;
                bar.suspend(|| eprintln!("{}: {n} masks", path.display()));
            }
            Err(e) => {
                bar.suspend(|| eprintln!("{}: skipped: {e:#}", path.display()));
                failed.push(path.clone());
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "{done} image(s) done, {skipped} already done, {} failed -> {}",
        failed.len(),
        args.out.display()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
