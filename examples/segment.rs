//! Promptable segmentation of one image with SAM.
//!
//! ```text
//! cargo run --release --example segment -- --image photo.jpg --point 500,375 --out out/
//! cargo run --release --example segment -- --model ./sam-vit-base --image photo.jpg \
//!     --box 75,275,1725,850 --point 575,750,0 --multimask --save-logits --out out/
//! ```
//!
//! Writes `mask_<k>.png` (255 = foreground, original size), `overlay.png`, `result.json` and,
//! with `--save-logits`, `logits.safetensors` (`low_res_logits` [K,256,256], `iou_scores` [K]).

#[cfg(feature = "accelerate")]
extern crate accelerate_src;
#[cfg(feature = "mkl")]
extern crate intel_mkl_src;

use anyhow::{bail, Context, Result};
use clap::Parser;
use segany::core::image::load_rgb;
use segany::core::nn::CpuMatmul;
use segany::core::{parse_cpu_matmul, parse_device, parse_dtype, viz};
use segany::{PointLabel, Prompt, Sam, SamPredictor};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Segment an image with SAM from points and/or a box")]
struct Args {
    /// Hub repo id (owner/name[@revision]), a local directory or a .safetensors file.
    #[arg(long, default_value = "facebook/sam-vit-base")]
    model: String,
    /// Input image (any format the `image` crate decodes).
    #[arg(long)]
    image: PathBuf,
    /// A point X,Y[,LABEL] in image pixels; LABEL 1 = foreground (default), 0 = background.
    #[arg(long = "point", value_name = "X,Y[,LABEL]")]
    points: Vec<String>,
    /// A box X0,Y0,X1,Y1 in image pixels.
    #[arg(long = "box", value_name = "X0,Y0,X1,Y1")]
    bbox: Option<String>,
    /// Return three candidate masks instead of one.
    #[arg(long)]
    multimask: bool,
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
    /// Also write logits.safetensors with the low-resolution logits and IoU scores.
    #[arg(long)]
    save_logits: bool,
    /// Output directory (created if needed).
    #[arg(long)]
    out: PathBuf,
}

fn numbers(s: &str, what: &str) -> Result<Vec<f32>> {
    s.split(',')
        .map(|v| {
            let x: f32 = v
                .trim()
                .parse()
                .with_context(|| format!("{what} {s:?}: {v:?} is not a number"))?;
            if !x.is_finite() {
                bail!("{what} {s:?}: {v:?} is not finite");
            }
            Ok(x)
        })
        .collect()
}

fn build_prompt(args: &Args, w: u32, h: u32) -> Result<Prompt> {
    let mut prompt = Prompt::new();
    for p in &args.points {
        let v = numbers(p, "point")?;
        let label = match v.len() {
            2 => PointLabel::Foreground,
            3 => PointLabel::from_value(v[2] as i64)
                .filter(|_| v[2].fract() == 0.0)
                .with_context(|| format!("point {p:?}: label must be 0 or 1"))?,
            _ => bail!("point {p:?}: expected X,Y or X,Y,LABEL"),
        };
        if v[0] < 0.0 || v[1] < 0.0 || v[0] > w as f32 || v[1] > h as f32 {
            bail!("point {p:?} lies outside the {w}x{h} image");
        }
        prompt = prompt.point(v[0], v[1], label);
    }
    if let Some(b) = &args.bbox {
        let v = numbers(b, "box")?;
        if v.len() != 4 {
            bail!("box {b:?}: expected X0,Y0,X1,Y1");
        }
        if v[2] < v[0] || v[3] < v[1] {
            bail!("box {b:?}: needs X0 <= X1 and Y0 <= Y1");
        }
        prompt = prompt.with_box([v[0], v[1], v[2], v[3]]);
    }
    if prompt.is_empty() {
        bail!("empty prompt: give at least one --point X,Y[,LABEL] or a --box X0,Y0,X1,Y1");
    }
    Ok(prompt)
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let device = parse_device(&args.device)?;
    let dtype = parse_dtype(&args.dtype)?;
    let cpu_matmul = parse_cpu_matmul(&args.cpu_matmul)?;
    let img = load_rgb(&args.image)?;
    let prompt = build_prompt(&args, img.width(), img.height())?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let t = Instant::now();
    let mut sam = Sam::load(&args.model, &device, dtype)
        .with_context(|| format!("loading model {}", args.model))?;
    if cpu_matmul == CpuMatmul::Bf16 && !sam.set_cpu_matmul(cpu_matmul)? {
        eprintln!(
            "note: --cpu-matmul bf16 needs an f32 model on a CPU with AVX-512 BF16; using f32"
        );
    }
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut predictor = SamPredictor::new(sam);
    let t = Instant::now();
    predictor.set_image(&img)?;
    let encode_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let pred = predictor.predict(&prompt, args.multimask)?;
    let decode_ms = t.elapsed().as_secs_f64() * 1e3;

    let mut overlay = img.clone();
    let mut masks = Vec::new();
    for (k, (mask, score)) in pred.masks.iter().zip(&pred.scores).enumerate() {
        let file = format!("mask_{k}.png");
        mask.save_png(args.out.join(&file))?;
        viz::blend_mask(&mut overlay, mask, viz::palette(k), 0.45);
        masks.push(serde_json::json!({
            "file": file, "score": score, "area": mask.area(), "bbox": mask.bbox_xywh(),
        }));
    }
    let radius = (img.width().max(img.height()) as f32 / 150.0).max(3.0);
    if let Some(b) = prompt.bbox {
        viz::draw_box(
            &mut overlay,
            b,
            (radius / 2.0).max(2.0) as u32,
            image::Rgb([0, 255, 255]),
        );
    }
    for p in &prompt.points {
        let color = match p.label {
            PointLabel::Foreground => image::Rgb([0, 220, 0]),
            PointLabel::Background => image::Rgb([230, 0, 0]),
        };
        viz::draw_point(&mut overlay, p.x, p.y, radius, color);
    }
    let overlay_path = args.out.join("overlay.png");
    overlay
        .save(&overlay_path)
        .with_context(|| format!("writing {}", overlay_path.display()))?;

    let result = serde_json::json!({
        "image": args.image.display().to_string(),
        "height": img.height(),
        "width": img.width(),
        "masks": masks,
        "timings_ms": { "load": load_ms, "encode": encode_ms, "decode": decode_ms },
    });
    let json_path = args.out.join("result.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("writing {}", json_path.display()))?;

    if args.save_logits {
        let path = args.out.join("logits.safetensors");
        let iou = candle_core::Tensor::new(pred.scores.as_slice(), &candle_core::Device::Cpu)?;
        let tensors: HashMap<String, candle_core::Tensor> = [
            (
                "low_res_logits".to_string(),
                pred.low_res_logits.to_device(&candle_core::Device::Cpu)?,
            ),
            ("iou_scores".to_string(), iou),
        ]
        .into();
        candle_core::safetensors::save(&tensors, &path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "{} mask(s), scores {:?}; load {load_ms:.0} ms, encode {encode_ms:.0} ms, decode {decode_ms:.0} ms -> {}",
        pred.masks.len(),
        pred.scores,
        args.out.display()
    );
    Ok(())
}
