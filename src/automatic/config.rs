//! Generator settings, defaulting to segment-anything's `SamAutomaticMaskGenerator`.

use super::grid::build_all_layer_point_grids;
use super::record::OutputMode;
use segany_core::{Error, Result};

/// Settings of [`super::SamAutomaticMaskGenerator`]; `Default` is the official generator's.
#[derive(Debug, Clone, PartialEq)]
pub struct AmgConfig {
    /// Points sampled along each side of the image (`None` with explicit `point_grids`).
    pub points_per_side: Option<usize>,
    /// Points run through the decoder at once.
    pub points_per_batch: usize,
    /// Keep masks whose predicted IoU is `>` this (no filter when `<= 0`).
    pub pred_iou_thresh: f64,
    /// Keep masks whose stability score is `>=` this (no filter when `<= 0`).
    pub stability_score_thresh: f64,
    /// Logit offset for the stability score's two thresholds.
    pub stability_score_offset: f64,
    /// Box IoU above which NMS drops a mask within one crop.
    pub box_nms_thresh: f64,
    /// Extra crop layers (layer `i` has `(2^i)²` crops).
    pub crop_n_layers: usize,
    /// Box IoU above which NMS drops a mask across crops.
    pub crop_nms_thresh: f64,
    /// Overlap of first-layer crops as a fraction of the short side.
    pub crop_overlap_ratio: f64,
    /// Points per side in layer `n` are divided by this to the power `n`.
    pub crop_n_points_downscale_factor: usize,
    /// Explicit grids in `[0, 1]²`, one per crop layer (instead of `points_per_side`).
    pub point_grids: Option<Vec<Vec<[f64; 2]>>>,
    /// Remove holes and islands smaller than this many pixels (0: off), then NMS again.
    pub min_mask_region_area: usize,
    /// Form of the returned masks.
    pub output_mode: OutputMode,
}

impl Default for AmgConfig {
    fn default() -> Self {
        Self {
            points_per_side: Some(32),
            points_per_batch: 64,
            pred_iou_thresh: 0.88,
            stability_score_thresh: 0.95,
            stability_score_offset: 1.0,
            box_nms_thresh: 0.7,
            crop_n_layers: 0,
            crop_nms_thresh: 0.7,
            crop_overlap_ratio: 512.0 / 1500.0,
            crop_n_points_downscale_factor: 1,
            point_grids: None,
            min_mask_region_area: 0,
            output_mode: OutputMode::BinaryMask,
        }
    }
}

impl AmgConfig {
    /// The point grid of every crop layer, validating the settings.
    pub fn point_grids(&self) -> Result<Vec<Vec<[f64; 2]>>> {
        if self.points_per_batch == 0 {
            return Err(Error::InvalidArgument(
                "points_per_batch must be > 0".into(),
            ));
        }
        if self.crop_n_points_downscale_factor == 0 {
            return Err(Error::InvalidArgument(
                "crop_n_points_downscale_factor must be > 0".into(),
            ));
        }
        let finite = [
            ("pred_iou_thresh", self.pred_iou_thresh),
            ("stability_score_thresh", self.stability_score_thresh),
            ("stability_score_offset", self.stability_score_offset),
            ("box_nms_thresh", self.box_nms_thresh),
            ("crop_nms_thresh", self.crop_nms_thresh),
            ("crop_overlap_ratio", self.crop_overlap_ratio),
        ];
        for (name, v) in finite {
            if !v.is_finite() {
                return Err(Error::InvalidArgument(format!(
                    "{name} = {v} is not finite"
                )));
            }
        }
        match (&self.points_per_side, &self.point_grids) {
            (Some(n), None) => Ok(build_all_layer_point_grids(
                *n,
                self.crop_n_layers,
                self.crop_n_points_downscale_factor,
            )),
            (None, Some(g)) => {
                if g.len() < self.crop_n_layers + 1 {
                    return Err(Error::InvalidArgument(format!(
                        "point_grids has {} grids but crop_n_layers = {} needs {}",
                        g.len(),
                        self.crop_n_layers,
                        self.crop_n_layers + 1
                    )));
                }
                if let Some(p) = g
                    .iter()
                    .flatten()
                    .find(|p| !(0.0..=1.0).contains(&p[0]) || !(0.0..=1.0).contains(&p[1]))
                {
                    return Err(Error::InvalidArgument(format!(
                        "point grid value {p:?} lies outside [0, 1]"
                    )));
                }
                Ok(g.clone())
            }
            _ => Err(Error::InvalidArgument(
                "exactly one of points_per_side or point_grids must be given".into(),
            )),
        }
    }
}
