//! CLIP zero-shot scores and dense features for one image and a few texts.
//!
//! ```text
//! cargo run --release --example clip -- --model ./clip-vit-base-patch16 \
//!     --image photo.jpg --text "a dog" --text "a cat" --out out/
//! cargo run --release --example clip -- --model ./CS-ViT-B-16.safetensors --surgery \
//!     --image photo.jpg --text "the woman on the left" --out out/
//! ```
//!
//! `--model` is a local directory (transformers `model.safetensors` + `config.json`, or
//! open_clip `open_clip_pytorch_model.safetensors` [+ `open_clip_config.json`]) or a single
//! `.safetensors` file (OpenAI / CLIP Surgery state dict), or a hub repo id
//! (`openai/clip-vit-base-patch16@refs/pr/10`; `HF_HOME` / `HF_HUB_OFFLINE` honoured).
//!
//! Prints the softmax over the texts and writes `DIR/features.safetensors`:
//! `image_tokens` [1,1+N,D] (all tokens after ln_post and projection; with `--surgery` the
//! CLIP Surgery v-v path in the last 6 blocks), `image_embeds` [1,D], `text_embeds` [T,D],
//! `text_tokens` [T,77,W] (`ln_final` outputs), `token_ids` [T,77] (int64). Embeddings are
//! stored as the model returns them, before normalisation.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::{Tensor, D};
use clap::Parser;
use segany_clip::io::CheckpointFiles;
use segany_clip::{
    clip_preprocess, l2_normalize, ssp_sam_preprocess, RgbImage, TokenizeOptions, VisionMode,
};

#[derive(Parser, Debug)]
#[command(about = "CLIP zero-shot probabilities and dense features")]
struct Args {
    /// A local checkpoint directory or .safetensors file (hub ids: see the module docs).
    #[arg(long)]
    model: String,
    /// Run the vision tower in CLIP Surgery mode (v-v attention in the last blocks).
    #[arg(long)]
    surgery: bool,
    /// Number of dual-path blocks in surgery mode.
    #[arg(long, default_value_t = 6)]
    surgery_depth: usize,
    /// Preprocessing: `clip` (short side, centre crop) or `ssp-sam` (long side, zero canvas).
    #[arg(long, default_value = "clip")]
    preprocess: String,
    /// Input image.
    #[arg(long)]
    image: PathBuf,
    /// A text (repeat for several).
    #[arg(long = "text", required = true)]
    texts: Vec<String>,
    /// Truncate texts longer than the context (EOT kept last) instead of failing.
    #[arg(long)]
    truncate: bool,
    /// cpu, cuda[:N] or metal[:N] (GPU needs the matching cargo feature).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Output directory (created if needed).
    #[arg(long)]
    out: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dev = segany::core::parse_device(&args.device)?;
    let source = segany::CheckpointSource::parse(&args.model)?;
    let path = match &source {
        segany::CheckpointSource::Hub { .. } => {
            let weights = [
                "model.safetensors",
                "open_clip_model.safetensors",
                "open_clip_pytorch_model.safetensors",
            ];
            let resolved = source.resolve(&weights)?;
            for extra in ["tokenizer.json", "open_clip_config.json"] {
                source.fetch_optional(extra);
            }
            resolved.weights
        }
        segany::CheckpointSource::Dir(p) | segany::CheckpointSource::File(p) => p.clone(),
    };
    let files = CheckpointFiles::locate(&path)?;
    let (model, tokenizer) = files
        .load(&dev)
        .with_context(|| format!("loading {}", files.weights.display()))?;
    let size = model.config().vision.image_size;

    let img = image::open(&args.image)
        .with_context(|| format!("reading {}", args.image.display()))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let rgb = RgbImage::new(img.as_raw(), w, h)?;
    let px = match args.preprocess.as_str() {
        "clip" => clip_preprocess(rgb, size, &dev)?,
        "ssp-sam" => ssp_sam_preprocess(rgb, size, &dev)?.0,
        other => bail!("unknown --preprocess {other:?} (clip, ssp-sam)"),
    }
    .unsqueeze(0)?;

    let mode = if args.surgery {
        VisionMode::Surgery {
            depth: args.surgery_depth,
        }
    } else {
        VisionMode::Plain
    };
    let image_tokens = model.encode_image_tokens(&px, mode)?; // [1, 1+N, D]
    let image_embeds = image_tokens.narrow(1, 0, 1)?.squeeze(1)?; // [1, D]
    let opts = TokenizeOptions {
        truncate: args.truncate,
        allow_empty: false,
    };
    let token_ids = tokenizer.tokenize(&args.texts, opts, &dev)?; // [T, 77] i64
    let text = model.encode_text(&token_ids)?;

    let logits = (l2_normalize(&image_embeds)?.matmul(&l2_normalize(&text.embeds)?.t()?)?
        * model.logit_scale())?;
    let probs = candle_nn::ops::softmax(&logits, D::Minus1)?
        .squeeze(0)?
        .to_vec1::<f32>()?;
    println!(
        "model {} ({}x{} px, {} tokens, mode {:?})",
        files.weights.display(),
        size,
        size,
        image_tokens.dim(1)?,
        mode
    );
    for (t, p) in args.texts.iter().zip(&probs) {
        println!("{p:>8.4}  {t}");
    }

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let out_path = args.out.join("features.safetensors");
    let tensors: HashMap<String, Tensor> = [
        ("image_tokens", image_tokens),
        ("image_embeds", image_embeds),
        ("text_embeds", text.embeds),
        ("text_tokens", text.tokens),
        ("token_ids", token_ids),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    candle_core::safetensors::save(&tensors, &out_path)?;
    println!("wrote {}", out_path.display());
    Ok(())
}
