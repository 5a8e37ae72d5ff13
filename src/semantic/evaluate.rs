//! SSA's evaluation (`scripts/evaluation.py` = `pipeline.py::eval_pipeline`): every
//! `*_semantic.json` of a prediction folder is turned back into a class map and scored against
//! its ground-truth PNG with mmseg's `intersect_and_union` (ignore 255), summed over the set.

use super::miou::MiouAccumulator;
use segany_core::{Error, Result};
use segany_data::mask::Rle;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Which ground truth layout and class set to evaluate with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalDataset {
    /// ADE20K: flat folders, `<name>_semantic.json` ↔ `<gt>/<name>.png`, labels `value − 1`
    /// in `u8` (0 "other" becomes 255, ignored); 150 classes.
    Ade20k,
    /// Cityscapes: one sub-folder per city in both trees,
    /// `<name>_leftImg8bit_semantic.json` ↔ `<name>_gtFine_labelTrainIds.png`; 19 classes.
    Cityscapes,
}

/// Per-class and summary numbers, as SSA prints them (its tables show these × 100).
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// Class names, in id order.
    pub class_names: Vec<String>,
    /// IoU per class (`NaN` where the class is in neither prediction nor ground truth).
    pub iou: Vec<f64>,
    /// Accuracy (recall) per class (`NaN` where the class is absent from the ground truth).
    pub acc: Vec<f64>,
    /// Overall pixel accuracy.
    pub aacc: f64,
    /// Images scored.
    pub images: usize,
}

impl EvalReport {
    /// `nanmean(IoU) × 100`.
    pub fn miou(&self) -> f64 {
        nanmean(&self.iou) * 100.0
    }

    /// `nanmean(Acc) × 100`.
    pub fn macc(&self) -> f64 {
        nanmean(&self.acc) * 100.0
    }

    /// The per-class table and the summary as text (values × 100, two decimals, as SSA).
    pub fn table(&self) -> String {
        let width = self
            .class_names
            .iter()
            .map(|n| n.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut s = format!("{:<width$} | {:>6} | {:>6}\n", "Class", "IoU", "Acc");
        s.push_str(&format!(
            "{}-+-{}-+-{}\n",
            "-".repeat(width),
            "-".repeat(6),
            "-".repeat(6)
        ));
        for ((n, i), a) in self.class_names.iter().zip(&self.iou).zip(&self.acc) {
            s.push_str(&format!(
                "{n:<width$} | {:>6.2} | {:>6.2}\n",
                i * 100.0,
                a * 100.0
            ));
        }
        s.push_str(&format!(
            "\nSummary over {} image(s): aAcc {:.2}  mIoU {:.2}  mAcc {:.2}\n",
            self.images,
            self.aacc * 100.0,
            self.miou(),
            self.macc()
        ));
        s
    }
}

fn nanmean(v: &[f64]) -> f64 {
    let x: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if x.is_empty() {
        f64::NAN
    } else {
        x.iter().sum::<f64>() / x.len() as f64
    }
}

#[derive(Deserialize)]
struct RleJson {
    size: [usize; 2],
    counts: String,
}

/// `semantic_mask` entries in file order (SSA paints them in that order).
struct OrderedMasks(Vec<(String, RleJson)>);

impl<'de> Deserialize<'de> for OrderedMasks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedMasks;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map from class id to COCO RLE")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = m.next_entry::<String, RleJson>()? {
                    v.push(e);
                }
                Ok(OrderedMasks(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
struct PredictionJson {
    semantic_mask: OrderedMasks,
}

/// Rebuilds a prediction from an SSA JSON text: zeros, then each `semantic_mask` entry (in
/// file order) paints its class id. Returns `(h, w, row-major class map)`.
pub fn prediction_from_json(json: &str) -> std::result::Result<(usize, usize, Vec<u32>), String> {
    let p: PredictionJson = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut out: Option<(usize, usize, Vec<u32>)> = None;
    for (id, r) in p.semantic_mask.0 {
        let class: u32 = id
            .parse()
            .map_err(|_| format!("semantic_mask key {id:?} is not a class id"))?;
        let [h, w] = r.size;
        let rle = Rle::from_string(&r.counts, h, w).map_err(|e| format!("class {id}: {e}"))?;
        let m = rle.decode().map_err(|e| format!("class {id}: {e}"))?;
        let (_, _, map) = out.get_or_insert_with(|| (h, w, vec![0; h * w]));
        if map.len() != h * w {
            return Err(format!(
                "class {id}: size {h}x{w} differs from the first mask"
            ));
        }
        // RLE masks decode column-major into a row-major `Mask`.
        for (dst, &v) in map.iter_mut().zip(m.as_slice()) {
            if v != 0 {
                *dst = class;
            }
        }
    }
    out.ok_or_else(|| "semantic_mask is empty".into())
}

/// Reads a ground-truth PNG as `u8` labels (Pillow's `unchanged` then `astype(uint8)`):
/// 8-bit grey as is, 16-bit grey truncated to its low byte.
pub fn read_label_png(path: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let img = image::open(path).map_err(|e| Error::Image {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let data = match img {
        image::DynamicImage::ImageLuma8(g) => g.into_raw(),
        image::DynamicImage::ImageLuma16(g) => g.into_raw().into_iter().map(|v| v as u8).collect(),
        other => {
            return Err(Error::Image {
                path: path.to_path_buf(),
                reason: format!(
                    "ground truth must be a single-channel PNG, found {:?}",
                    other.color()
                ),
            })
        }
    };
    Ok((h, w, data))
}

fn json_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(".json"))
        })
        .collect();
    v.sort();
    Ok(v)
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    Ok(v)
}

/// The (prediction, ground truth) file pairs SSA's evaluation visits. Cityscapes takes every
/// sub-folder of `pred_dir` (SSA hard-codes `frankfurt, lindau, munster`, the validation cities).
pub fn evaluation_pairs(
    pred_dir: &Path,
    gt_dir: &Path,
    dataset: EvalDataset,
) -> Result<Vec<(PathBuf, PathBuf)>> {
    let mut pairs = Vec::new();
    match dataset {
        EvalDataset::Ade20k => {
            for p in json_files(pred_dir)? {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().replace("_semantic.json", ".png"));
                pairs.push((p.clone(), gt_dir.join(name.unwrap_or_default())));
            }
        }
        EvalDataset::Cityscapes => {
            for city in subdirs(pred_dir)? {
                let city_name = city
                    .file_name()
                    .map(|n| n.to_os_string())
                    .unwrap_or_default();
                for p in json_files(&city)? {
                    let name = p.file_name().map(|n| {
                        n.to_string_lossy()
                            .replace("_leftImg8bit_semantic.json", "_gtFine_labelTrainIds.png")
                    });
                    pairs.push((
                        p.clone(),
                        gt_dir.join(&city_name).join(name.unwrap_or_default()),
                    ));
                }
            }
        }
    }
    Ok(pairs)
}

/// Scores every prediction of `pred_dir` against `gt_dir` (see [`evaluation_pairs`]).
/// A missing or unreadable file, or a size mismatch, is an error naming the file.
pub fn evaluate_folder(
    pred_dir: &Path,
    gt_dir: &Path,
    dataset: EvalDataset,
    class_names: &[&str],
) -> Result<EvalReport> {
    let pairs = evaluation_pairs(pred_dir, gt_dir, dataset)?;
    let mut acc = MiouAccumulator::new(class_names.len());
    for (pred_path, gt_path) in &pairs {
        let text = std::fs::read_to_string(pred_path).map_err(|e| Error::io(pred_path, e))?;
        let (h, w, pred) = prediction_from_json(&text).map_err(|reason| Error::Config {
            path: Some(pred_path.clone()),
            reason,
        })?;
        let (gh, gw, gt) = read_label_png(gt_path)?;
        if (gh, gw) != (h, w) {
            return Err(Error::InvalidArgument(format!(
                "{}: prediction is {h}x{w}, ground truth {} is {gh}x{gw}",
                pred_path.display(),
                gt_path.display()
            )));
        }
        let gt: Vec<u32> = match dataset {
            EvalDataset::Ade20k => gt.into_iter().map(super::ade20k_label).collect(),
            EvalDataset::Cityscapes => gt.into_iter().map(u32::from).collect(),
        };
        acc.add(&pred, &gt);
    }
    Ok(EvalReport {
        class_names: class_names.iter().map(|s| s.to_string()).collect(),
        iou: acc.ious(),
        acc: acc.accs(),
        aacc: acc.aacc(),
        images: pairs.len(),
    })
}
