//! Referring segmentation with SSP-SAM: segment the object each sentence describes.
//!
//! ```text
//! cargo run --release --example refer -- --image photo.jpg \
//!     --text "the man on the left" --text "the red car" \
//!     --sam facebook/sam-vit-huge --clip openai/clip-vit-large-patch14-336 \
//!     --ssp ./ssp-sam-336/ --save-logits --out out/
//! ```
//!
//! * `--sam`: hub repo id, directory or `.safetensors` file (Meta or transformers layout; any
//!   encoder size works, SSP-SAM was trained on ViT-H embeddings).
//! * `--clip`: hub repo id (transformers layout), directory or `.safetensors` file (transformers,
//!   open_clip, or a converted OpenAI `CS-ViT-*` state dict). Run as CLIP Surgery. ViT-B/16 goes
//!   with the 224 head, ViT-L/14@336 with the 336 head.
//! * `--ssp`: the converted SSP-SAM checkpoint (`tools/convert_ssp_sam.py`), a directory or
//!   `.safetensors` file.
//!
//! The image is encoded once; the `--text`s then run only the text tower, the head and SAM's
//! mask decoder, `--batch-size` of them at a time (default 8). Texts are lower-cased and get a
//! trailing "." as SSP-SAM does. An empty text, or one over CLIP's 77-token context, is an error
//! naming the `--text` at fault (pass `--truncate` to cut long texts to 77 tokens, EOT last,
//! instead).
//!
//! Writes to `--out`: `mask_<k>.png` (k = 0, 1, ... in `--text` order; original size, 255 =
//! object), `overlay.png` (all masks and boxes on the image), `result.json` (per text: box in
//! image pixels `[x0, y0, x1, y1]`, the raw `(cx, cy, w, h)` head output, mask area, timings),
//! and with `--save-logits` `logits.safetensors` holding `logits_512` [K,512,512] (the padded
//! 512 frame) and `boxes` [K,4] (the sigmoid cx,cy,w,h head output, relative to the CLIP canvas).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use clap::Parser;
use segany::core::nn::CpuMatmul;
use segany::core::{image::load_rgb, parse_cpu_matmul, parse_device, viz};
use segany::referring::{ReferringOptions, ReferringSegmenter};

#[derive(Parser, Debug)]
#[command(about = "SSP-SAM: segment the object a sentence describes")]
struct Args {
    /// Input image.
    #[arg(long)]
    image: PathBuf,
    /// A referring expression (repeat for several).
    #[arg(long = "text", required = true)]
    texts: Vec<String>,
    /// SAM checkpoint: hub repo id, directory or .safetensors file.
    #[arg(long)]
    sam: String,
    /// CLIP checkpoint: hub repo id, directory or .safetensors file.
    #[arg(long)]
    clip: String,
    /// SSP-SAM head: directory or .safetensors file (converted with tools/convert_ssp_sam.py).
    #[arg(long)]
    ssp: PathBuf,
    /// Also write logits.safetensors (logits_512 [K,512,512], boxes [K,4]).
    #[arg(long)]
    save_logits: bool,
    /// Cut texts longer than 77 tokens (EOT kept last) instead of failing.
    #[arg(long)]
    truncate: bool,
    /// Expressions run through the text tower, head and decoder together.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// cpu, cuda[:N] or metal[:N] (GPU needs the matching cargo feature).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// CPU products: f32 (default, the reference's arithmetic) or bf16 (opt-in, CPUs with
    /// AVX-512 BF16: SAM's image encoder, both CLIP towers and the SSP-SAM head in bf16).
    #[arg(long, default_value = "f32")]
    cpu_matmul: String,
    /// Output directory (created if needed).
    #[arg(long)]
    out: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    for (k, t) in args.texts.iter().enumerate() {
        if t.trim().is_empty() {
            bail!("--text #{k} is empty: give the sentence that describes the object");
        }
    }
    let device = parse_device(&args.device)?;
    let cpu_matmul = parse_cpu_matmul(&args.cpu_matmul)?;
    let img = load_rgb(&args.image)?;

    let t = Instant::now();
    let mut seg = ReferringSegmenter::load(&args.sam, &args.clip, &args.ssp, &device)
        .context("loading SAM, CLIP and the SSP-SAM head")?;
    if cpu_matmul == CpuMatmul::Bf16 && !seg.set_cpu_matmul(cpu_matmul)? {
        eprintln!("note: --cpu-matmul bf16 needs a CPU with AVX-512 BF16; using f32");
    }
    seg.set_options(ReferringOptions {
        truncate: args.truncate,
        batch_size: args.batch_size,
        ..Default::default()
    });
    let load_ms = t.elapsed().as_secs_f64() * 1e3;

    let t = Instant::now();
    seg.set_image(&img)?;
    let image_ms = t.elapsed().as_secs_f64() * 1e3;
    let image_timings = seg.image_timings().unwrap_or_default();

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut overlay = img.clone();
    let mut entries = Vec::new();
    let mut logits = Vec::new();
    let mut boxes = Vec::new();
    // Check every expression first so an error names the one at fault.
    for (k, text) in args.texts.iter().enumerate() {
        seg.token_ids(text)
            .with_context(|| format!("--text #{k} {text:?}"))?;
    }
    let results = seg.segment_all(&img, &args.texts)?;
    for (k, (text, r)) in args.texts.iter().zip(results).enumerate() {
        let path = args.out.join(format!("mask_{k}.png"));
        r.mask.save_png(&path)?;
        let color = viz::palette(k);
        viz::blend_mask(&mut overlay, &r.mask, color, 0.5);
        viz::draw_box(&mut overlay, r.box_xyxy, 2, color);
        println!(
            "[{k}] {text:?}: area {} px, box [{:.1}, {:.1}, {:.1}, {:.1}], {:.0} ms",
            r.mask.area(),
            r.box_xyxy[0],
            r.box_xyxy[1],
            r.box_xyxy[2],
            r.box_xyxy[3],
            r.timings.text_ms + r.timings.head_ms + r.timings.decode_ms
        );
        entries.push(serde_json::json!({
            "index": k,
            "text": text,
            "mask": format!("mask_{k}.png"),
            "box_xyxy": r.box_xyxy,
            "box_cxcywh_canvas": r.box_cxcywh,
            "mask_area": r.mask.area(),
            "timings_ms": r.timings,
        }));
        logits.push(r.logits_512.to_device(&candle_core::Device::Cpu)?);
        boxes.push(Tensor::new(&r.box_cxcywh, &candle_core::Device::Cpu)?);
    }
    let overlay_path = args.out.join("overlay.png");
    overlay
        .save(&overlay_path)
        .with_context(|| format!("writing {}", overlay_path.display()))?;

    let result = serde_json::json!({
        "image": args.image,
        "image_size": [img.width(), img.height()],
        "clip_canvas": seg.ssp().config().image_size,
        "timings_ms": {
            "load": load_ms,
            "image": image_ms,
            "sam_encoder": image_timings.sam_ms,
            "clip_encoder": image_timings.clip_ms,
        },
        "texts": entries,
    });
    let json_path = args.out.join("result.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("writing {}", json_path.display()))?;

    if args.save_logits {
        let mut tensors = HashMap::new();
        tensors.insert("logits_512".to_string(), Tensor::stack(&logits, 0)?);
        tensors.insert("boxes".to_string(), Tensor::stack(&boxes, 0)?);
        let path = args.out.join("logits.safetensors");
        candle_core::safetensors::save(&tensors, &path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("wrote {}", args.out.display());
    Ok(())
}
