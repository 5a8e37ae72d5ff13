//! SSA's close-set pipeline (`scripts/pipeline.py::semantic_segment_anything_inference`): SAM's
//! automatic masks and a semantic segmenter's class map, combined by [`vote`], written as SSA's
//! `<name>_semantic.json`.

use super::{vote, SemanticSegmenter};
use crate::automatic::{AmgConfig, MaskRecord, OutputMode, SamAutomaticMaskGenerator};
use image::RgbImage;
use segany_core::{Error, Result};
use segany_data::mask::Rle;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// The generator settings of SSA's `scripts/main_ssa.py` (ADE20K and Cityscapes):
/// 64 points per side, `pred_iou_thresh` 0.86, `stability_score_thresh` 0.92, one crop layer
/// with the points downscaled by 2, `min_mask_region_area` 100, COCO RLE output; the rest
/// are segment-anything's defaults. (SSA uses 128 points per side for Foggy Driving.)
pub fn ssa_amg_config() -> AmgConfig {
    AmgConfig {
        points_per_side: Some(64),
        pred_iou_thresh: 0.86,
        stability_score_thresh: 0.92,
        crop_n_layers: 1,
        crop_n_points_downscale_factor: 2,
        min_mask_region_area: 100,
        output_mode: OutputMode::CocoRle,
        ..AmgConfig::default()
    }
}

/// One annotation of SSA's JSON: the SAM record plus its class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SsaAnnotation {
    /// The generator's record (`segmentation, area, bbox, predicted_iou, point_coords,
    /// stability_score, crop_box`).
    #[serde(flatten)]
    pub record: MaskRecord,
    /// The voted class id (not in SSA's JSON; kept for callers).
    #[serde(skip)]
    pub class_id: u32,
    /// The class name.
    pub class_name: String,
    /// SSA writes the same name again, as a string (not a list).
    pub class_proposals: String,
}

/// SSA's output for one image: `{"annotations": [...], "semantic_mask": {"<id>": RLE}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct SsaResult {
    /// Annotations by decreasing area (SSA's order).
    pub annotations: Vec<SsaAnnotation>,
    /// One COCO RLE per class present after voting, by increasing class id.
    pub semantic_mask: Vec<(u32, Rle)>,
    /// Row-major `height × width` class map after voting.
    pub class_map: Vec<u32>,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
}

struct ClassMasks<'a>(&'a [(u32, Rle)]);

/// pycocotools' compressed RLE, fields in its order.
#[derive(Serialize)]
struct CocoRle {
    size: [usize; 2],
    counts: String,
}

impl Serialize for ClassMasks<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (c, rle) in self.0 {
            let r = CocoRle {
                size: [rle.height(), rle.width()],
                counts: rle.to_string(),
            };
            m.serialize_entry(&c.to_string(), &r)?;
        }
        m.end()
    }
}

impl Serialize for SsaResult {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("annotations", &self.annotations)?;
        m.serialize_entry("semantic_mask", &ClassMasks(&self.semantic_mask))?;
        m.end()
    }
}

/// SSA's labelling of generator records with a class map (row-major `h × w`): [`vote`], then
/// records sorted by decreasing area (stable) with `class_name` = `class_proposals` =
/// `class_names[label]`. A class id without a name is an error (SSA raises `KeyError`).
pub fn label_masks(
    records: Vec<MaskRecord>,
    class_map: &[u32],
    h: usize,
    w: usize,
    class_names: &[&str],
) -> Result<SsaResult> {
    let rles = records
        .iter()
        .map(|r| r.segmentation.to_rle())
        .collect::<Result<Vec<_>>>()?;
    let v = vote(&rles, class_map, h, w)?;
    let name = |c: u32| {
        class_names.get(c as usize).copied().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "class id {c} has no name ({} class names)",
                class_names.len()
            ))
        })
    };
    for (c, _) in &v.class_rles {
        name(*c)?;
    }
    let mut records: Vec<Option<MaskRecord>> = records.into_iter().map(Some).collect();
    let annotations = v
        .order
        .iter()
        .map(|&i| {
            let label = v.labels[i];
            let n = name(label)?.to_string();
            Ok(SsaAnnotation {
                record: records[i].take().ok_or_else(|| {
                    Error::InvalidArgument(format!("vote order repeats mask {i}"))
                })?,
                class_id: label,
                class_name: n.clone(),
                class_proposals: n,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SsaResult {
        annotations,
        semantic_mask: v.class_rles,
        class_map: v.semantic_mask,
        height: h,
        width: w,
    })
}

/// SSA close-set: SAM's automatic mask generator + a SegFormer semantic branch + the vote.
///
/// SAM encodes each crop once and decodes all its grid points from that embedding; the
/// segmenter runs once on the whole image.
#[derive(Debug)]
pub struct SsaPipeline {
    generator: SamAutomaticMaskGenerator,
    segmenter: SemanticSegmenter,
    class_names: Vec<String>,
    bgr: bool,
}

impl SsaPipeline {
    /// A pipeline labelling with `class_names` (e.g. [`super::Dataset::class_names`]), whose
    /// length must equal the segmenter's number of classes.
    pub fn new(
        generator: SamAutomaticMaskGenerator,
        segmenter: SemanticSegmenter,
        class_names: &[&str],
    ) -> Result<Self> {
        if class_names.len() != segmenter.num_labels() {
            return Err(Error::InvalidArgument(format!(
                "{} class names for a segmenter with {} classes",
                class_names.len(),
                segmenter.num_labels()
            )));
        }
        Ok(Self {
            generator,
            segmenter,
            class_names: class_names.iter().map(|s| s.to_string()).collect(),
            bgr: false,
        })
    }

    /// Feed both branches the image with red and blue swapped, as SSA does (it reads images
    /// with `mmcv.imread`, i.e. BGR, and passes them on unchanged; its published numbers were
    /// produced that way). Off by default: the models were trained on RGB.
    pub fn with_bgr(mut self, bgr: bool) -> Self {
        self.bgr = bgr;
        self
    }

    /// The mask generator.
    pub fn generator(&self) -> &SamAutomaticMaskGenerator {
        &self.generator
    }

    /// The semantic branch.
    pub fn segmenter(&self) -> &SemanticSegmenter {
        &self.segmenter
    }

    /// Runs SSA on `img` (RGB).
    pub fn run(&mut self, img: &RgbImage) -> Result<SsaResult> {
        let swapped;
        let input = if self.bgr {
            let mut s = img.clone();
            for p in s.pixels_mut() {
                p.0.swap(0, 2);
            }
            swapped = s;
            &swapped
        } else {
            img
        };
        let records = self.generator.generate(input)?;
        let class_map = self.segmenter.segment(input)?;
        let names: Vec<&str> = self.class_names.iter().map(String::as_str).collect();
        label_masks(
            records,
            &class_map,
            img.height() as usize,
            img.width() as usize,
            &names,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::automatic::Segmentation;
    use segany_data::mask::Mask;

    fn record(h: usize, w: usize, px: Vec<u8>) -> MaskRecord {
        let rle = Rle::encode(&Mask::from_vec(h, w, px).unwrap()).unwrap();
        MaskRecord {
            area: u64::from(rle.area()),
            segmentation: Segmentation::Coco(rle),
            bbox: [0, 0, 1, 1],
            predicted_iou: 0.9,
            point_coords: [[0.5, 0.5]],
            stability_score: 0.95,
            crop_box: [0, 0, 4, 1],
        }
    }

    #[test]
    fn ssa_json_shape_and_order() {
        // 1×4 image; classes 10 and 2 in the map; the big mask votes 10, the small one 2.
        let big = record(1, 4, vec![1, 1, 1, 0]);
        let small = record(1, 4, vec![0, 0, 0, 1]);
        let names: Vec<String> = (0..11).map(|i| format!("c{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let r = label_masks(vec![small, big], &[10, 10, 2, 2], 1, 4, &names).unwrap();
        assert_eq!(r.class_map, vec![10, 10, 10, 2]);
        let json = serde_json::to_string(&r).unwrap();
        // Largest first; class_proposals is a string; semantic_mask keys by numeric id.
        let i10 = json.find("\"class_name\":\"c10\"").unwrap();
        let i2 = json.find("\"class_name\":\"c2\"").unwrap();
        assert!(i10 < i2, "{json}");
        assert!(json.contains("\"class_proposals\":\"c10\""));
        let k2 = json.find("\"2\":{\"size\":[1,4],\"counts\":").unwrap();
        let k10 = json.find("\"10\":{\"size\":[1,4],\"counts\":").unwrap();
        assert!(k2 < k10, "{json}");
        assert!(!json.contains("class_id"));
        // A class without a name is an error naming it.
        let err = label_masks(vec![], &[10, 10, 2, 2], 1, 4, &names[..5]).unwrap_err();
        assert!(err.to_string().contains("class id 10"), "{err}");
    }

    #[test]
    fn semantic_png_colours() {
        let r = label_masks(vec![], &[0, 1, 2, 0], 2, 2, &["a", "b", "c"]).unwrap();
        let img = r.semantic_image(&[[1, 1, 1], [2, 2, 2]]);
        assert_eq!(img.get_pixel(1, 0).0, [2, 2, 2]);
        assert_eq!(img.get_pixel(0, 1).0, [1, 1, 1]); // class 2 wraps to colour 0
    }
}
