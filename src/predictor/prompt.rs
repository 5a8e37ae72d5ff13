//! Prompts: points with labels, a box, a low-resolution mask.

use candle_core::Tensor;

/// Whether a point marks the object or the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointLabel {
    /// Not part of the object (label 0).
    Background,
    /// Part of the object (label 1).
    Foreground,
}

impl PointLabel {
    /// The numeric label SAM uses (1 foreground, 0 background).
    pub fn value(self) -> f32 {
        match self {
            Self::Background => 0.0,
            Self::Foreground => 1.0,
        }
    }

    /// From SAM's numeric label.
    pub fn from_value(v: i64) -> Option<Self> {
        match v {
            0 => Some(Self::Background),
            1 => Some(Self::Foreground),
            _ => None,
        }
    }
}

/// A point in original-image pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Column (x), pixels.
    pub x: f32,
    /// Row (y), pixels.
    pub y: f32,
    /// Foreground or background.
    pub label: PointLabel,
}

/// Any mix of points, one box and a low-resolution mask, in original-image pixels.
///
/// ```
/// use segany::Prompt;
/// let p = Prompt::new().foreground(120.0, 80.0).background(10.0, 10.0).with_box([50.0, 40.0, 200.0, 160.0]);
/// assert_eq!(p.points.len(), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Prompt {
    /// Points with labels.
    pub points: Vec<Point>,
    /// Box `[x0, y0, x1, y1]`.
    pub bbox: Option<[f32; 4]>,
    /// Low-resolution mask logits `(1, 256, 256)` (or `(256, 256)`), e.g. a previous
    /// prediction's `low_res_logits` entry.
    pub mask_input: Option<Tensor>,
}

impl Prompt {
    /// An empty prompt.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a point.
    pub fn point(mut self, x: f32, y: f32, label: PointLabel) -> Self {
        self.points.push(Point { x, y, label });
        self
    }

    /// Adds a foreground point.
    pub fn foreground(self, x: f32, y: f32) -> Self {
        self.point(x, y, PointLabel::Foreground)
    }

    /// Adds a background point.
    pub fn background(self, x: f32, y: f32) -> Self {
        self.point(x, y, PointLabel::Background)
    }

    /// Sets the box `[x0, y0, x1, y1]`.
    pub fn with_box(mut self, b: [f32; 4]) -> Self {
        self.bbox = Some(b);
        self
    }

    /// Sets the mask input (low-resolution logits).
    pub fn with_mask(mut self, logits: Tensor) -> Self {
        self.mask_input = Some(logits);
        self
    }

    /// Whether the prompt holds nothing.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.bbox.is_none() && self.mask_input.is_none()
    }
}
