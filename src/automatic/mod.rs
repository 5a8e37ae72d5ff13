//! Automatic mask generation: segment-anything's `SamAutomaticMaskGenerator`, step for step.
//!
//! A grid of single foreground points is run through SAM (three masks per point) on the whole
//! image and, optionally, on layers of overlapping crops (each crop re-encoded with its own
//! `set_image`). Masks are kept when the predicted IoU is `>` `pred_iou_thresh` and the stability
//! score (IoU of the full-resolution logits thresholded at `+offset` and `-offset`, strict `>`)
//! is `>=` `stability_score_thresh`; masks whose box touches a crop edge that is not an image
//! edge are dropped; duplicates are removed by box NMS within each crop (by predicted IoU) and
//! across crops (preferring smaller crops); optionally small holes and islands are removed and
//! NMS runs again (preferring untouched masks).
//!
//! ```no_run
//! use segany::automatic::{AmgConfig, SamAutomaticMaskGenerator};
//! # fn main() -> segany::Result<()> {
//! let sam = segany::Sam::load("facebook/sam-vit-base", &candle_core::Device::Cpu, candle_core::DType::F32)?;
//! let mut generator = SamAutomaticMaskGenerator::new(sam, AmgConfig::default())?;
//! let records = generator.generate(&segany::core::image::load_rgb("photo.jpg")?)?;
//! println!("{} masks", records.len());
//! # Ok(()) }
//! ```

mod config;
mod crops;
mod grid;
mod nms;
mod record;
mod regions;

pub use config::AmgConfig;
pub use crops::{generate_crop_boxes, is_box_near_crop_edge, BoxXyxy};
pub use grid::{build_all_layer_point_grids, build_point_grid};
pub use nms::nms;
pub use record::{MaskRecord, OutputMode, Segmentation};
pub use regions::{connected_components, mask_to_box, remove_small_regions, RegionMode};

use crate::{Sam, SamPredictor};
use candle_core::{DType, Tensor};
use image::RgbImage;
use rayon::prelude::*;
use segany_core::image::MaskPostprocessor;
use segany_core::nn::{grown, transpose_bytes_into};
use segany_core::{Error, Result};
use segany_data::mask::Rle;

/// A mask kept so far, in the image frame (segment-anything's `MaskData` row).
#[derive(Debug, Clone)]
struct Candidate {
    rle: Rle,
    bbox: BoxXyxy,
    iou: f32,
    point: [f64; 2],
    stability: f32,
    crop_box: BoxXyxy,
}

fn data_err(e: segany_data::DataError) -> Error {
    Error::InvalidArgument(e.to_string())
}

/// Generates masks for a whole image from a grid of point prompts.
#[derive(Debug, Clone)]
pub struct SamAutomaticMaskGenerator {
    predictor: SamPredictor,
    config: AmgConfig,
    grids: Vec<Vec<[f64; 2]>>,
}

impl SamAutomaticMaskGenerator {
    /// A generator over `sam` with `config` (validated).
    pub fn new(sam: Sam, config: AmgConfig) -> Result<Self> {
        let grids = config.point_grids()?;
        Ok(Self {
            predictor: SamPredictor::new(sam),
            config,
            grids,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AmgConfig {
        &self.config
    }

    /// The image encoder's CPU arithmetic ([`Sam::set_cpu_matmul`]); whether bf16 is on. The
    /// decoder, which runs once per point batch, keeps f32.
    pub fn set_cpu_matmul(&mut self, mode: segany_core::nn::CpuMatmul) -> Result<bool> {
        self.predictor.set_cpu_matmul(mode)
    }

    /// The predictor (and through it the model).
    pub fn predictor(&self) -> &SamPredictor {
        &self.predictor
    }

    /// Generates the mask records for `image`, in segment-anything's order.
    pub fn generate(&mut self, image: &RgbImage) -> Result<Vec<MaskRecord>> {
        if image.width() == 0 || image.height() == 0 {
            return Err(Error::InvalidArgument("image has zero size".into()));
        }
        let mut data = self.generate_masks(image)?;
        let cfg = &self.config;
        if cfg.min_mask_region_area > 0 {
            data = postprocess_small_regions(
                data,
                cfg.min_mask_region_area as f64,
                cfg.box_nms_thresh.max(cfg.crop_nms_thresh),
            )?;
        }
        data.into_iter()
            .map(|c| {
                let area = u64::from(c.rle.area());
                let segmentation = match cfg.output_mode {
                    OutputMode::CocoRle => Segmentation::Coco(c.rle),
                    OutputMode::UncompressedRle => Segmentation::Uncompressed(c.rle),
                    OutputMode::BinaryMask => {
                        let m = c.rle.decode().map_err(data_err)?;
                        Segmentation::Binary {
                            size: (m.height(), m.width()),
                            data: m.into_vec(),
                        }
                    }
                };
                Ok(MaskRecord {
                    segmentation,
                    area,
                    bbox: crops::xyxy_to_xywh(&c.bbox),
                    predicted_iou: f64::from(c.iou),
                    point_coords: [c.point],
                    stability_score: f64::from(c.stability),
                    crop_box: crops::xyxy_to_xywh(&c.crop_box),
                })
            })
            .collect()
    }

    fn generate_masks(&mut self, image: &RgbImage) -> Result<Vec<Candidate>> {
        let orig = (image.height() as usize, image.width() as usize);
        let (crop_boxes, layers) = generate_crop_boxes(
            orig,
            self.config.crop_n_layers,
            self.config.crop_overlap_ratio,
        );
        let mut data = Vec::new();
        for (crop_box, layer) in crop_boxes.iter().zip(&layers) {
            data.extend(self.process_crop(image, *crop_box, *layer, orig)?);
        }
        if crop_boxes.len() > 1 {
            // Prefer masks from smaller crops.
            let scores: Vec<f32> = data
                .iter()
                .map(|c| {
                    let b = c.crop_box;
                    1.0 / ((b[2] - b[0]) * (b[3] - b[1])) as f32
                })
                .collect();
            let boxes: Vec<[f32; 4]> = data.iter().map(|c| c.bbox.map(|v| v as f32)).collect();
            let keep = nms(&boxes, &scores, self.config.crop_nms_thresh);
            data = keep.into_iter().map(|i| data[i].clone()).collect();
        }
        Ok(data)
    }

    fn process_crop(
        &mut self,
        image: &RgbImage,
        crop_box: BoxXyxy,
        layer: usize,
        orig: (usize, usize),
    ) -> Result<Vec<Candidate>> {
        let [x0, y0, x1, y1] = crop_box;
        let cropped = image::imageops::crop_imm(
            image,
            x0 as u32,
            y0 as u32,
            (x1 - x0) as u32,
            (y1 - y0) as u32,
        )
        .to_image();
        let crop_size = (cropped.height() as usize, cropped.width() as usize);
        self.predictor.set_image(&cropped)?;
        let grid = self.grids.get(layer).ok_or_else(|| {
            Error::InvalidArgument(format!("no point grid for crop layer {layer}"))
        })?;
        let points: Vec<[f64; 2]> = grid
            .iter()
            .map(|p| [p[0] * crop_size.1 as f64, p[1] * crop_size.0 as f64])
            .collect();
        let mut data = Vec::new();
        // The low-resolution logits' memory, the binary masks' (and the resize's, for crops
        // the encoder resizes), reused by every batch and chunk of masks of this crop.
        let mut memory = ChunkMemory::default();
        for batch in points.chunks(self.config.points_per_batch.max(1)) {
            data.extend(self.process_batch(batch, crop_size, crop_box, orig, &mut memory)?);
        }
        self.predictor.reset_image();
        // Remove duplicates within this crop. The reference runs this NMS on crop-frame boxes;
        // ours are already in the image frame, which gives the same f32 arithmetic on integer
        // boxes (translation only shifts exact integers).
        let boxes: Vec<[f32; 4]> = data.iter().map(|c| c.bbox.map(|v| v as f32)).collect();
        let scores: Vec<f32> = data.iter().map(|c| c.iou).collect();
        let keep = nms(&boxes, &scores, self.config.box_nms_thresh);
        Ok(keep.into_iter().map(|i| data[i].clone()).collect())
    }

    fn process_batch(
        &self,
        points: &[[f64; 2]],
        crop_size: (usize, usize),
        crop_box: BoxXyxy,
        orig: (usize, usize),
        memory: &mut ChunkMemory,
    ) -> Result<Vec<Candidate>> {
        let cfg = &self.config;
        let sam = self.predictor.model();
        let emb = self.predictor.embedding().ok_or(Error::NoImage)?;
        let (ch, cw) = crop_size;
        let (nh, nw) =
            segany_core::image::ResizeLongestSide::new(sam.image_size()).preprocess_shape(ch, cw);
        let (sx, sy) = (nw as f64 / cw as f64, nh as f64 / ch as f64);
        let b = points.len();
        let xy: Vec<f32> = points
            .iter()
            .flat_map(|p| [(p[0] * sx) as f32, (p[1] * sy) as f32])
            .collect();
        let dev = sam.device();
        let coords = Tensor::from_vec(xy, (b, 1, 2), dev)?;
        let labels = Tensor::ones((b, 1), DType::F32, dev)?;
        let prompts = Some((&coords, &labels));
        // With a prepared image, the masks are upscaled only for prompts that have a mask
        // above the IoU threshold (the others would be dropped by the filter anyway).
        // `low`: low-resolution logits `(P, K, h, w)` (values in memory kept for the crop,
        // `dims` their shape); `rows`: the row of each kept mask among its `P·K` masks.
        let ChunkMemory {
            masks: mask_memory,
            resize,
            low,
        } = memory;
        let (ious, k, kept, dims, rows) = match self.predictor.prepared() {
            Some(prepared) => {
                let tokens = sam.decode_prepared_tokens(prepared, prompts, None)?;
                let (ious, k, kept) =
                    filter_by_iou(&sam.prepared_iou(&tokens, true)?, cfg.pred_iou_thresh)?;
                if kept.is_empty() {
                    return Ok(Vec::new());
                }
                let mut needed: Vec<usize> = kept.iter().map(|&i| i / k).collect();
                needed.dedup();
                let dims =
                    sam.upscale_prepared_into(prepared, &tokens, Some(&needed), true, low)?;
                // Row of each kept mask among the upscaled prompts' masks.
                let rows = kept
                    .iter()
                    .map(|&i| needed.partition_point(|&q| q < i / k) * k + i % k)
                    .collect::<Vec<_>>();
                (ious, k, kept, dims, rows)
            }
            None => {
                let (logits, iou) = sam.decode(&emb.features, prompts, None, None, true)?;
                let (ious, k, kept) = filter_by_iou(&iou, cfg.pred_iou_thresh)?;
                if kept.is_empty() {
                    return Ok(Vec::new());
                }
                let dims = logits.dims4()?;
                *low = logits.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                let rows = kept.clone();
                (ious, k, kept, dims, rows)
            }
        };
        let ctx = MaskContext {
            crop_size,
            crop_box,
            orig,
            offset: cfg.stability_score_offset as f32,
            stability_thresh: cfg.stability_score_thresh,
        };
        // Full-resolution logits a few masks at a time, never stored: each band of rows goes
        // through the stability counts and into the binary mask while it is in the cache;
        // then each mask's stability score, box and RLE, masks in parallel. Each chunk's
        // low-resolution logits are gathered into memory kept for the batch (no selected
        // copy of every kept mask's logits, no fresh tensor per chunk).
        let (h, w) = crop_size;
        let plane = dims.2 * dims.3;
        let dims = (dims.2, dims.3);
        let mut gathered = Vec::with_capacity(MASKS_PER_CHUNK.min(rows.len()) * plane);
        let mut out = Vec::new();
        for start in (0..kept.len()).step_by(MASKS_PER_CHUNK) {
            let len = MASKS_PER_CHUNK.min(kept.len() - start);
            gathered.clear();
            let found = {
                for &r in &rows[start..start + len] {
                    let Some(m) = low.get(r * plane..(r + 1) * plane) else {
                        return Err(Error::InvalidArgument(format!(
                            "mask {r} of {} low-resolution masks",
                            low.len() / plane.max(1)
                        )));
                    };
                    gathered.extend_from_slice(m);
                }
                let masks = grown(mask_memory, len * h * w);
                let counts = resize.postprocess_map(
                    &gathered,
                    dims,
                    sam.image_size(),
                    emb.input_size,
                    (h, w),
                    masks,
                    |logits, m| threshold_pass(logits, ctx.hi(), ctx.lo(), m),
                )?;
                masks
                    .par_chunks(h * w)
                    .zip(counts)
                    .map(|(m, bands)| {
                        let (inter, union) = bands
                            .iter()
                            .fold((0, 0), |(i, u), &(bi, bu)| (i + bi, u + bu));
                        candidate(m, inter, union, &ctx)
                    })
                    .collect::<Result<Vec<_>>>()?
            };
            for (found, &i) in found.into_iter().zip(&kept[start..start + len]) {
                let Some((rle, bbox, stability)) = found else {
                    continue;
                };
                let p = points[i / k];
                out.push(Candidate {
                    rle,
                    bbox,
                    iou: ious[i],
                    point: [p[0] + crop_box[0] as f64, p[1] + crop_box[1] as f64],
                    stability,
                    crop_box,
                });
            }
        }
        Ok(out)
    }
}

/// Masks post-processed at once in [`SamAutomaticMaskGenerator`] (their binary masks are kept
/// together, their full-resolution logits never are).
const MASKS_PER_CHUNK: usize = 16;

/// Memory a crop's batches and chunks of masks reuse: a batch's low-resolution logits, the
/// binary masks of one chunk, and the resize's intermediate logits.
#[derive(Default)]
struct ChunkMemory {
    low: Vec<f32>,
    masks: Vec<u8>,
    resize: MaskPostprocessor,
}

/// What [`candidate`] needs to know about the crop a mask comes from.
struct MaskContext {
    crop_size: (usize, usize),
    crop_box: BoxXyxy,
    orig: (usize, usize),
    offset: f32,
    stability_thresh: f64,
}

impl MaskContext {
    /// The stability score's upper threshold, `0 + offset` (the intersection's).
    fn hi(&self) -> f32 {
        0.0 + self.offset
    }

    /// The lower threshold, `0 - offset` (the union's).
    fn lo(&self) -> f32 {
        0.0 - self.offset
    }
}

/// One mask (crop frame, 0/1) with the counts of its full-resolution logits above the
/// stability thresholds → its RLE in the image, box and stability score, or `None` when the
/// stability filter or the crop-edge filter drops it.
fn candidate(
    m: &[u8],
    inter: u32,
    union: u32,
    ctx: &MaskContext,
) -> Result<Option<(Rle, BoxXyxy, f32)>> {
    let (h, w) = ctx.crop_size;
    let stability = inter as f32 / union as f32;
    // The reference keeps `stability >= thresh`; negating that also drops NaN (0/0).
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    let rejected = !(stability >= ctx.stability_thresh as f32);
    if ctx.stability_thresh > 0.0 && rejected {
        return Ok(None);
    }
    let bb = mask_to_box(m, h, w);
    let cb = ctx.crop_box;
    let bbox = [bb[0] + cb[0], bb[1] + cb[1], bb[2] + cb[0], bb[3] + cb[1]];
    let orig_box: BoxXyxy = [0, 0, ctx.orig.1 as i64, ctx.orig.0 as i64];
    if is_box_near_crop_edge(&bbox, &cb, &orig_box) {
        return Ok(None);
    }
    Ok(Some((
        uncropped_rle(m, ctx.crop_size, cb, ctx.orig)?,
        bbox,
        stability,
    )))
}

segany_core::avx2_dispatch! {
    /// One pass over a mask's logits: how many exceed `hi` and how many `lo` (the stability
    /// score's intersection and union), and the mask itself (`> 0`, as 0/1) into `m`. Built
    /// for the CPU's vector width.
    fn threshold_pass(logits: &[f32], hi: f32, lo: f32, m: &mut [u8]) -> (u32, u32)
        => threshold_pass_body
}

#[inline(always)]
fn threshold_pass_body(logits: &[f32], hi: f32, lo: f32, m: &mut [u8]) -> (u32, u32) {
    let (mut inter, mut union) = (0u32, 0u32);
    for (&v, o) in logits.iter().zip(m.iter_mut()) {
        inter += u32::from(v > hi);
        union += u32::from(v > lo);
        *o = u8::from(v > 0.0);
    }
    (inter, union)
}

/// The predicted IoUs `(B, K)` flattened, `K`, and the flat indices of the masks kept by the
/// IoU filter (strict `>`, only when the threshold is positive), in order.
fn filter_by_iou(iou: &Tensor, thresh: f64) -> Result<(Vec<f32>, usize, Vec<usize>)> {
    let k = iou.dim(1)?;
    let ious: Vec<f32> = iou.flatten_all()?.to_vec1()?;
    let t = thresh as f32;
    let kept = (0..ious.len())
        .filter(|&i| thresh <= 0.0 || ious[i] > t)
        .collect();
    Ok((ious, k, kept))
}

/// Column-major COCO RLE of a crop-frame mask pasted into the `orig` image at `crop_box`.
///
/// The mask is transposed in cache-sized blocks first, so the column-major scan reads memory
/// in order; the image outside the crop contributes runs of zeros without being visited.
fn uncropped_rle(
    m: &[u8],
    (ch, cw): (usize, usize),
    crop_box: BoxXyxy,
    (h, w): (usize, usize),
) -> Result<Rle> {
    let (x0, y0) = (crop_box[0] as usize, crop_box[1] as usize);
    if x0 + cw > w || y0 + ch > h || m.len() != ch * cw {
        return Err(Error::InvalidArgument(format!(
            "crop {ch}×{cw} at ({x0}, {y0}) does not fit a {h}×{w} image"
        )));
    }
    let mut t = vec![0u8; ch * cw];
    transpose_bytes_into(m, &mut t, ch, cw);
    let mut runs = Runs::default();
    for x in 0..w {
        if x < x0 || x >= x0 + cw {
            runs.zeros(h);
            continue;
        }
        runs.zeros(y0);
        runs.extend(&t[(x - x0) * ch..(x - x0 + 1) * ch]);
        runs.zeros(h - y0 - ch);
    }
    Rle::new(h, w, runs.finish()).map_err(data_err)
}

/// Run lengths of a 0/1 stream that starts with a (possibly empty) run of zeros.
#[derive(Default)]
struct Runs {
    counts: Vec<u32>,
    cur: u8,
    run: u32,
}

impl Runs {
    /// The values `s` pushed one by one: each change of value closes a run.
    fn extend(&mut self, s: &[u8]) {
        let mut i = 0;
        loop {
            let j = next_change(s, i, self.cur);
            self.run += (j - i) as u32;
            let Some(&v) = s.get(j) else {
                return;
            };
            self.counts.push(self.run);
            self.run = 0;
            self.cur = v;
            i = j;
        }
    }

    fn zeros(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if self.cur != 0 {
            self.counts.push(self.run);
            self.run = 0;
            self.cur = 0;
        }
        self.run += n as u32;
    }

    fn finish(mut self) -> Vec<u32> {
        self.counts.push(self.run);
        self.counts
    }
}

/// The first index from `i` on where `s` is not `v` (`s.len()` if none), eight bytes at a
/// time: a mask's runs are long, so most words hold no change.
fn next_change(s: &[u8], mut i: usize, v: u8) -> usize {
    let same = u64::from_le_bytes([v; 8]);
    while let Some(word) = s.get(i..i + 8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(word);
        let diff = u64::from_le_bytes(b) ^ same;
        if diff != 0 {
            // Little-endian: the lowest differing byte is the first.
            return i + (diff.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while s.get(i).is_some_and(|&x| x == v) {
        i += 1;
    }
    i.min(s.len())
}

/// Removes small holes and islands, then NMS preferring masks that did not change
/// (`SamAutomaticMaskGenerator.postprocess_small_regions`).
fn postprocess_small_regions(
    data: Vec<Candidate>,
    min_area: f64,
    nms_thresh: f64,
) -> Result<Vec<Candidate>> {
    if data.is_empty() {
        return Ok(data);
    }
    let mut new_masks = Vec::with_capacity(data.len());
    let mut scores = Vec::with_capacity(data.len());
    let mut boxes = Vec::with_capacity(data.len());
    for c in &data {
        let m = c.rle.decode().map_err(data_err)?;
        let (h, w) = (m.height(), m.width());
        let mut px = m.into_vec();
        let a = remove_small_regions(&mut px, h, w, min_area, RegionMode::Holes);
        let b = remove_small_regions(&mut px, h, w, min_area, RegionMode::Islands);
        scores.push(if a || b { 0.0f32 } else { 1.0 });
        boxes.push(mask_to_box(&px, h, w));
        new_masks.push((px, h, w));
    }
    let fboxes: Vec<[f32; 4]> = boxes.iter().map(|b| b.map(|v| v as f32)).collect();
    let keep = nms(&fboxes, &scores, nms_thresh);
    let mut out = Vec::with_capacity(keep.len());
    for i in keep {
        let mut c = data[i].clone();
        if scores[i] == 0.0 {
            let (px, h, w) = &new_masks[i];
            let mask = segany_data::mask::Mask::from_vec(*h, *w, px.clone()).map_err(data_err)?;
            c.rle = Rle::encode(&mask).map_err(data_err)?;
            c.bbox = boxes[i];
        }
        out.push(c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use segany_data::mask::Mask;

    /// The fused pass gives the three comparisons' counts and mask.
    #[test]
    fn threshold_pass_matches_three_comparisons() {
        // Values on both thresholds and on zero, NaN, and a length that is no multiple of
        // any vector width.
        let (hi, lo) = (1.0f32, -1.0f32);
        let logits: Vec<f32> = (0..1003)
            .map(|i| match i % 7 {
                0 => hi,
                1 => lo,
                2 => 0.0,
                3 => f32::NAN,
                _ => ((i * 37 % 101) as f32 - 50.0) / 20.0,
            })
            .collect();
        let mut m = vec![7u8; logits.len()];
        let (inter, union) = threshold_pass(&logits, hi, lo, &mut m);
        let count = |t: f32| logits.iter().filter(|&&v| v > t).count() as u32;
        assert_eq!((inter, union), (count(hi), count(lo)));
        assert!(logits.iter().zip(&m).all(|(&v, &b)| b == u8::from(v > 0.0)));
    }

    /// The pasted crop's RLE equals the RLE of the whole image mask built pixel by pixel, for a
    /// crop touching no image edge, one at the corner, and the whole image.
    #[test]
    fn uncropped_rle_matches_encoding_the_pasted_mask() -> Result<()> {
        let (h, w) = (37, 45);
        for (crop_box, ch, cw) in [
            ([5, 7, 38, 30], 23, 33),
            ([0, 0, 20, 11], 11, 20),
            ([0, 0, 45, 37], 37, 45),
        ] {
            // Short runs, and a blob with runs longer than the 8-byte words scanned at once
            // (ending inside words and on their edges).
            let speckle: Vec<u8> = (0..ch * cw)
                .map(|i| u8::from((i * 7919 % 13) < 6))
                .collect();
            let blob: Vec<u8> = (0..ch * cw)
                .map(|i| {
                    let (y, x) = ((i / cw) as i64 - 10, (i % cw) as i64 - 12);
                    u8::from(x * x + y * y < 80 || (x + 12) % 17 == 0)
                })
                .collect();
            for m in [speckle, blob] {
                let mut full = vec![0u8; h * w];
                for y in 0..ch {
                    for x in 0..cw {
                        full[(y + crop_box[1] as usize) * w + x + crop_box[0] as usize] =
                            m[y * cw + x];
                    }
                }
                let expect = Rle::encode(&Mask::from_vec(h, w, full).map_err(data_err)?)
                    .map_err(data_err)?;
                let got = uncropped_rle(&m, (ch, cw), crop_box, (h, w))?;
                assert_eq!(got.counts(), expect.counts(), "crop {crop_box:?}");
            }
        }
        assert!(uncropped_rle(&[0; 4], (2, 2), [44, 0, 46, 2], (h, w)).is_err());
        Ok(())
    }
}
