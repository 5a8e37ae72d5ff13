//! Greedy box non-maximum suppression with torchvision's `nms` / `batched_nms` semantics
//! (one category).

/// Indices of the kept boxes, by decreasing score.
///
/// As torchvision's CPU kernel: scores sorted descending with a *stable* sort (ties keep input
/// order), areas and IoUs computed in f32 without the `+1` convention, a box suppressed when its
/// IoU with a kept box is strictly greater than `iou_threshold` (compared in f64).
///
/// ```
/// use segany::automatic::nms;
/// let boxes = [[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]];
/// assert_eq!(nms(&boxes, &[0.5, 0.9, 0.1], 0.7), vec![1, 2]);
/// ```
pub fn nms(boxes: &[[f32; 4]], scores: &[f32], iou_threshold: f64) -> Vec<usize> {
    let n = boxes.len().min(scores.len());
    let mut order: Vec<usize> = (0..n).collect();
    // Descending, NaN first as torch's sort orders NaN as the largest value.
    order.sort_by(|&a, &b| {
        let (x, y) = (scores[a], scores[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            _ => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
        }
    });
    let areas: Vec<f32> = boxes
        .iter()
        .map(|b| (b[2] - b[0]) * (b[3] - b[1]))
        .collect();
    let mut suppressed = vec![false; n];
    let mut keep = Vec::new();
    for (oi, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let bi = boxes[i];
        for &j in &order[oi + 1..] {
            if suppressed[j] {
                continue;
            }
            let bj = boxes[j];
            let w = (bi[2].min(bj[2]) - bi[0].max(bj[0])).max(0.0);
            let h = (bi[3].min(bj[3]) - bi[1].max(bj[1])).max(0.0);
            let inter = w * h;
            let ovr = inter / (areas[i] + areas[j] - inter);
            if f64::from(ovr) > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}
