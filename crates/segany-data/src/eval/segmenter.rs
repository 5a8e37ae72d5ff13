//! The `ReferringSegmenter` trait and trivial baselines.

use image::RgbImage;

use crate::error::Result;
use crate::mask::Mask;
use crate::refer::Sample;

/// What a segmenter sees for one sample.
pub struct SegmenterInput<'a> {
    /// The RGB image at original resolution.
    pub image: &'a RgbImage,
    /// The referring expression (the normalised `sent`).
    pub sentence: &'a str,
    /// The full sample. Real models must only use `image` and `sentence`;
    /// oracle baselines such as [`GroundTruthBox`] read the annotation.
    pub sample: &'a Sample,
}

/// A segmenter's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// Binary mask at the image's resolution (non-zero = foreground).
    pub mask: Mask,
    /// Whether the model says the sentence refers to nothing (GRES); models
    /// without a no-target head leave it `false`.
    pub no_target: bool,
    /// The prediction in SSP-SAM's 512×512 padded frame when the model makes
    /// one natively (SSP-SAM thresholds its 512² logits at 0). `None`: the
    /// runner maps `mask` into the frame exactly as it maps the ground truth.
    pub frame_mask: Option<Mask>,
}

/// Image + sentence → mask. The SSP-SAM pipeline implements this.
///
/// ```
/// use segany_data::eval::{Prediction, ReferringSegmenter, SegmenterInput};
/// use segany_data::mask::Mask;
///
/// struct Empty;
/// impl ReferringSegmenter for Empty {
///     fn name(&self) -> String { "empty".into() }
///     fn segment(&mut self, input: &SegmenterInput<'_>) -> segany_data::Result<Prediction> {
///         let (w, h) = input.image.dimensions();
///         Ok(Prediction { mask: Mask::zeros(h as usize, w as usize), no_target: true, frame_mask: None })
///     }
/// }
/// ```
pub trait ReferringSegmenter {
    /// Short name used in result file names and tables.
    fn name(&self) -> String;
    /// Segments the object the sentence refers to.
    fn segment(&mut self, input: &SegmenterInput<'_>) -> Result<Prediction>;
}

/// Baseline: the whole image is the answer.
#[derive(Clone, Copy, Debug, Default)]
pub struct WholeImage;

impl ReferringSegmenter for WholeImage {
    fn name(&self) -> String {
        "whole-image".into()
    }

    fn segment(&mut self, input: &SegmenterInput<'_>) -> Result<Prediction> {
        let (w, h) = input.image.dimensions();
        let (h, w) = (h as usize, w as usize);
        Ok(Prediction {
            mask: Mask::from_vec(h, w, vec![1; h * w])?,
            no_target: false,
            frame_mask: None,
        })
    }
}

/// Oracle baseline: the ground-truth box filled (pixels whose index lies in
/// `floor(x)..ceil(x + w)` × `floor(y)..ceil(y + h)`), and "no target" when
/// the sample has none. An upper bound for box-only methods.
#[derive(Clone, Copy, Debug, Default)]
pub struct GroundTruthBox;

impl ReferringSegmenter for GroundTruthBox {
    fn name(&self) -> String {
        "gt-box".into()
    }

    fn segment(&mut self, input: &SegmenterInput<'_>) -> Result<Prediction> {
        let (w, h) = input.image.dimensions();
        let (h, w) = (h as usize, w as usize);
        let mut mask = Mask::zeros(h, w);
        let Some([bx, by, bw, bh]) = input.sample.bbox else {
            return Ok(Prediction {
                mask,
                no_target: true,
                frame_mask: None,
            });
        };
        let clamp = |v: f64, hi: usize| v.max(0.0).min(hi as f64) as usize;
        let (x0, x1) = (clamp(bx.floor(), w), clamp((bx + bw).ceil(), w));
        let (y0, y1) = (clamp(by.floor(), h), clamp((by + bh).ceil(), h));
        for y in y0..y1 {
            for x in x0..x1 {
                mask.set(y, x, 1);
            }
        }
        Ok(Prediction {
            mask,
            no_target: false,
            frame_mask: None,
        })
    }
}
