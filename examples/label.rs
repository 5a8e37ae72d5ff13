//! Semantic labels for every SAM mask: Semantic Segment Anything (SSA, close set) or SSA-engine
//! (open vocabulary), over an image or a folder; and SSA's mIoU evaluation.
//!
//! ```text
//! cargo run --release --example label -- --input photo.jpg --out out/ --save-img
//! cargo run --release --example label -- --input ADEChallengeData2016/images/validation --out ssa/ \
//!     --sam facebook/sam-vit-huge --segformer nvidia/segformer-b5-finetuned-ade-640-640 --dataset ade20k
//! cargo run --release --example label -- --evaluate --pred ssa/ \
//!     --gt ADEChallengeData2016/annotations/validation --dataset ade20k
//! ```
//!
//! For every image writes `OUT/<stem>_semantic.json` (SSA's format: `{"annotations": [SA-1B
//! records + class_name + class_proposals], "semantic_mask": {"<class id>": COCO RLE}}`) and
//! `OUT/<stem>_semantic.png` (the voted class map in the dataset's colours); `--save-img` adds
//! `OUT/<stem>_overlay.png` (each mask in its own colour with its class name). Images whose JSON
//! exists are skipped (`--overwrite` redoes them); an image that fails is reported and skipped,
//! and the exit status is the number of failed images (capped at 125).
//!
//! Defaults are SSA's (`scripts/main_ssa.py`): SAM ViT-H, SegFormer-B5 of the dataset, and the
//! generator with 64 points per side, one crop layer (points downscaled by 2), `pred_iou_thresh`
//! 0.86, `stability_score_thresh` 0.92, `min_mask_region_area` 100, COCO RLE. Every generator
//! flag of `automask` overrides them. `--bgr` feeds the models BGR images as SSA does.

#[cfg(feature = "accelerate")]
extern crate accelerate_src;
#[cfg(feature = "mkl")]
extern crate intel_mkl_src;

use anyhow::{bail, Context, Result};
use clap::Parser;
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use segany::automatic::{AmgConfig, OutputMode};
use segany::core::image::{list_images, load_rgb};
use segany::core::{parse_device, parse_dtype};
use segany::semantic::engine::{CloseSetBranch, EngineConfig, SsaEngine};
use segany::semantic::{
    evaluate_folder, labelled_overlay, ssa_amg_config, Dataset, EvalDataset, SemanticSegmenter,
    SsaPipeline, Variant,
};
use segany::{Sam, SamAutomaticMaskGenerator};
use segany_data::mask::Rle;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(about = "Label SAM masks with SSA (close set) or SSA-engine (open vocabulary)")]
struct Args {
    /// An image or a directory of images.
    #[arg(long, required_unless_present = "evaluate")]
    input: Option<PathBuf>,
    /// Output directory (created if needed).
    #[arg(long, required_unless_present = "evaluate")]
    out: Option<PathBuf>,
    /// SAM: hub repo id (owner/name[@revision]), a local directory or a .safetensors file.
    #[arg(long, default_value = "facebook/sam-vit-huge")]
    sam: String,
    /// SegFormer (hub id, directory or model.safetensors); default: the dataset's B5 checkpoint.
    #[arg(long)]
    segformer: Option<String>,
    /// Class set: ade20k (150 classes) or cityscapes (19).
    #[arg(long, default_value = "ade20k")]
    dataset: String,
    /// ssa (close set) or engine (SSA-engine, open vocabulary).
    #[arg(long, default_value = "ssa")]
    mode: String,
    /// SSA-engine's light preset (smaller models, 16 points per side).
    #[arg(long)]
    light: bool,
    /// Engine: CLIP for the proposal filter (hub id, directory or file); default SSA's
    /// (openai/clip-vit-large-patch14, or clip-vit-base-patch32 with --light).
    #[arg(long)]
    clip: Option<String>,
    /// Engine: candidate names, comma-separated (repeatable).
    #[arg(long)]
    vocab: Vec<String>,
    /// Engine: a file of candidate names, one per line (`#` starts a comment line).
    #[arg(long)]
    vocab_file: Option<PathBuf>,
    /// Engine: BLIP captioner (e.g. Salesforce/blip-image-captioning-large); its captions'
    /// noun phrases become candidates. Without it no captions are made.
    #[arg(long)]
    blip: Option<String>,
    /// Also write OUT/<stem>_overlay.png.
    #[arg(long)]
    save_img: bool,
    /// Feed the models BGR images, as SSA does (it reads them with mmcv.imread).
    #[arg(long)]
    bgr: bool,
    /// Points sampled along each image side.
    #[arg(long)]
    points_per_side: Option<usize>,
    /// Points run through the decoder at once.
    #[arg(long)]
    points_per_batch: Option<usize>,
    /// Keep masks whose predicted IoU is above this.
    #[arg(long)]
    pred_iou_thresh: Option<f64>,
    /// Keep masks whose stability score is at least this.
    #[arg(long)]
    stability_score_thresh: Option<f64>,
    /// Logit offset of the stability score.
    #[arg(long)]
    stability_score_offset: Option<f64>,
    /// Box IoU above which NMS drops duplicates within a crop.
    #[arg(long)]
    box_nms_thresh: Option<f64>,
    /// Extra layers of image crops.
    #[arg(long)]
    crop_n_layers: Option<usize>,
    /// Box IoU above which NMS drops duplicates across crops.
    #[arg(long)]
    crop_nms_thresh: Option<f64>,
    /// Crop overlap as a fraction of the short side.
    #[arg(long)]
    crop_overlap_ratio: Option<f64>,
    /// Points per side in crop layer n are divided by this to the power n.
    #[arg(long)]
    crop_n_points_downscale_factor: Option<usize>,
    /// Remove holes and islands smaller than this many pixels (0 = off).
    #[arg(long)]
    min_mask_region_area: Option<usize>,
    /// binary_mask, uncompressed_rle or coco_rle (SSA: coco_rle).
    #[arg(long)]
    output_mode: Option<String>,
    /// cpu, cuda[:N] or metal[:N].
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Weights dtype: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Recompute images whose JSON already exists.
    #[arg(long)]
    overwrite: bool,
    /// Evaluate predictions instead of labelling (needs --pred, --gt, --dataset).
    #[arg(long)]
    evaluate: bool,
    /// Folder of <name>_semantic.json predictions (--evaluate).
    #[arg(long, requires = "evaluate")]
    pred: Option<PathBuf>,
    /// Folder of ground-truth PNGs (--evaluate).
    #[arg(long, requires = "evaluate")]
    gt: Option<PathBuf>,
}

/// What a labeller produces for one image.
struct Labelled {
    /// The `<stem>_semantic.json` text.
    json: String,
    /// Every mask with its label, for the overlay.
    masks: Vec<(Rle, String)>,
    /// `<stem>_semantic.png`, when the mode has a semantic map.
    semantic_png: Option<RgbImage>,
}

/// One labelling mode.
trait Labeller {
    fn label(&mut self, img: &RgbImage) -> Result<Labelled>;
}

struct Ssa {
    pipeline: SsaPipeline,
    dataset: Dataset,
}

impl Labeller for Ssa {
    fn label(&mut self, img: &RgbImage) -> Result<Labelled> {
        let r = self.pipeline.run(img)?;
        Ok(Labelled {
            json: serde_json::to_string(&r)?,
            masks: r.labelled_masks()?,
            semantic_png: Some(r.semantic_image(self.dataset.palette())),
        })
    }
}

/// The generator settings: the mode's defaults, overridden by the flags given.
fn amg_config(args: &Args, base: AmgConfig) -> Result<AmgConfig> {
    let mut c = base;
    if let Some(v) = args.points_per_side {
        c.points_per_side = Some(v);
    }
    macro_rules! set {
        ($($f:ident),*) => { $(if let Some(v) = args.$f { c.$f = v; })* };
    }
    set!(
        points_per_batch,
        pred_iou_thresh,
        stability_score_thresh,
        stability_score_offset,
        box_nms_thresh,
        crop_n_layers,
        crop_nms_thresh,
        crop_overlap_ratio,
        crop_n_points_downscale_factor,
        min_mask_region_area
    );
    if let Some(m) = &args.output_mode {
        c.output_mode = m.parse::<OutputMode>()?;
    }
    Ok(c)
}

fn build_ssa(args: &Args, dataset: Dataset) -> Result<Box<dyn Labeller>> {
    if args.light {
        eprintln!("note: --light only changes --mode engine; SSA uses its main_ssa.py settings");
    }
    let device = parse_device(&args.device)?;
    let dtype = parse_dtype(&args.dtype)?;
    let seg_id = args.segformer.clone().unwrap_or_else(|| {
        segany::semantic::SegformerConfig::preset_hub_id(Variant::B5, dataset).0
    });
    let segmenter = SemanticSegmenter::load(&seg_id, &device, dtype)
        .with_context(|| format!("loading SegFormer {seg_id}"))?;
    let sam = Sam::load(&args.sam, &device, dtype)
        .with_context(|| format!("loading SAM {}", args.sam))?;
    let generator = SamAutomaticMaskGenerator::new(sam, amg_config(args, ssa_amg_config())?)?;
    let pipeline =
        SsaPipeline::new(generator, segmenter, dataset.class_names())?.with_bgr(args.bgr);
    Ok(Box::new(Ssa { pipeline, dataset }))
}

/// `--mode engine`: SSA-engine (open vocabulary, `segany::semantic::engine`).
struct Engine {
    generator: SamAutomaticMaskGenerator,
    /// The close-set branch (SegFormer and its class names), with `--segformer`.
    segmenter: Option<(SemanticSegmenter, Vec<String>)>,
    engine: SsaEngine,
    vocabulary: Vec<String>,
    bgr: bool,
}

impl Labeller for Engine {
    fn label(&mut self, img: &RgbImage) -> Result<Labelled> {
        // SSA-engine gives SAM and the close-set branch the same (BGR with --bgr) array.
        let swapped;
        let view = if self.bgr {
            let mut s = img.clone();
            s.pixels_mut().for_each(|p| p.0.swap(0, 2));
            swapped = s;
            &swapped
        } else {
            img
        };
        let records = self.generator.generate(view)?;
        let mut branches = Vec::new();
        if let Some((segmenter, labels)) = &self.segmenter {
            branches.push(CloseSetBranch {
                class_map: segmenter.segment(view)?,
                width: img.width() as usize,
                height: img.height() as usize,
                labels: labels.clone(),
            });
        }
        let (labels, doc) =
            self.engine
                .label_records(img, &records, &branches, &self.vocabulary)?;
        let masks = records
            .iter()
            .zip(&labels)
            .map(|(r, l)| Ok((r.segmentation.to_rle()?, l.class_name.clone())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Labelled {
            json: serde_json::to_string(&doc)?,
            masks,
            semantic_png: None,
        })
    }
}

/// `--vocab a,b,c` (repeatable) and `--vocab-file` (one name per line, `#` comments).
fn vocabulary(args: &Args) -> Result<Vec<String>> {
    let mut names: Vec<String> = args
        .vocab
        .iter()
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(path) = &args.vocab_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --vocab-file {}", path.display()))?;
        names.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    Ok(names)
}

fn build_engine(args: &Args, dataset: Dataset) -> Result<Box<dyn Labeller>> {
    let device = parse_device(&args.device)?;
    let dtype = parse_dtype(&args.dtype)?;
    let mut config = if args.light {
        EngineConfig::light()
    } else {
        EngineConfig::base()
    };
    config.amg = amg_config(args, config.amg.clone())?;
    config.bgr = args.bgr;
    config.captions = args.blip.is_some();
    let vocabulary = vocabulary(args)?;
    if vocabulary.is_empty() && args.segformer.is_none() && args.blip.is_none() {
        bail!("--mode engine needs candidate names: --vocab, --vocab-file, --segformer or --blip");
    }
    let segmenter = match &args.segformer {
        Some(id) => {
            let s = SemanticSegmenter::load(id, &device, dtype)
                .with_context(|| format!("loading SegFormer {id}"))?;
            let names = dataset
                .class_names()
                .iter()
                .map(|n| n.to_string())
                .collect();
            Some((s, names))
        }
        None => None,
    };
    let clip = args
        .clip
        .clone()
        .unwrap_or_else(|| config.clip_model.to_string());
    let bgr = config.bgr;
    let sam = Sam::load(&args.sam, &device, dtype)
        .with_context(|| format!("loading SAM {}", args.sam))?;
    let generator = SamAutomaticMaskGenerator::new(sam, config.amg.clone())?;
    let engine = SsaEngine::load(&clip, args.blip.as_deref(), config, &device)
        .with_context(|| format!("loading CLIP {clip} / BLIP {:?}", args.blip))?;
    Ok(Box::new(Engine {
        generator,
        segmenter,
        engine,
        vocabulary,
        bgr,
    }))
}

fn process(
    labeller: &mut dyn Labeller,
    path: &Path,
    out: &Path,
    stem: &str,
    save_img: bool,
) -> Result<usize> {
    let img = load_rgb(path)?;
    let l = labeller.label(&img)?;
    if let Some(png) = &l.semantic_png {
        let p = out.join(format!("{stem}_semantic.png"));
        png.save(&p)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if save_img {
        let p = out.join(format!("{stem}_overlay.png"));
        labelled_overlay(&img, &l.masks)?
            .save(&p)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    // The JSON appears last and atomically: its presence marks the image as done.
    let json = out.join(format!("{stem}_semantic.json"));
    let tmp = out.join(format!("{stem}_semantic.json.partial"));
    std::fs::write(&tmp, &l.json).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &json).with_context(|| format!("writing {}", json.display()))?;
    Ok(l.masks.len())
}

fn evaluate(args: &Args, dataset: Dataset) -> Result<()> {
    let (Some(pred), Some(gt)) = (&args.pred, &args.gt) else {
        bail!("--evaluate needs --pred DIR and --gt DIR");
    };
    let eval_dataset = match dataset {
        Dataset::Ade20k => EvalDataset::Ade20k,
        Dataset::Cityscapes => EvalDataset::Cityscapes,
    };
    let report = evaluate_folder(pred, gt, eval_dataset, dataset.class_names())?;
    print!("{}", report.table());
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dataset: Dataset = args.dataset.parse().map_err(anyhow::Error::msg)?;
    if args.evaluate {
        return evaluate(&args, dataset);
    }
    let (Some(input), Some(out)) = (&args.input, &args.out) else {
        bail!("--input and --out are required");
    };
    let images = list_images(input).context("--input")?;
    if images.is_empty() {
        bail!("--input {}: no images found", input.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut labeller = match args.mode.as_str() {
        "ssa" => build_ssa(&args, dataset)?,
        "engine" => build_engine(&args, dataset)?,
        other => bail!("--mode {other:?}: expected ssa or engine"),
    };

    let bar = ProgressBar::new(images.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut done, mut skipped, mut failed) = (0usize, 0usize, 0usize);
    for path in &images {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        bar.set_message(stem.clone());
        if out.join(format!("{stem}_semantic.json")).exists() && !args.overwrite {
            skipped += 1;
            bar.inc(1);
            continue;
        }
        match process(labeller.as_mut(), path, out, &stem, args.save_img) {
            Ok(n) => {
                done += 1;
                bar.suspend(|| eprintln!("{}: {n} masks", path.display()));
            }
            Err(e) => {
                failed += 1;
                bar.suspend(|| eprintln!("{}: skipped: {e:#}", path.display()));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "{done} image(s) done, {skipped} already done, {failed} failed -> {}",
        out.display()
    );
    if failed > 0 {
        std::process::exit(failed.min(125) as i32);
    }
    Ok(())
}
