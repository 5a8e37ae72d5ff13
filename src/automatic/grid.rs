//! Point grids (segment-anything `utils/amg.py::build_point_grid`, `build_all_layer_point_grids`).

/// numpy's `linspace(start, stop, n)` (endpoint included, last value set to `stop` exactly).
fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    if let Some(last) = v.last_mut() {
        *last = stop;
    }
    v
}

/// An `n × n` grid of points evenly spaced in `[0, 1]²`, row-major (x varies fastest), each
/// `1 / (2n)` away from the borders.
///
/// ```
/// let g = segany::automatic::build_point_grid(2);
/// assert_eq!(g, vec![[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]);
/// ```
pub fn build_point_grid(n_per_side: usize) -> Vec<[f64; 2]> {
    if n_per_side == 0 {
        return Vec::new();
    }
    let offset = 1.0 / (2 * n_per_side) as f64;
    let side = linspace(offset, 1.0 - offset, n_per_side);
    let mut out = Vec::with_capacity(n_per_side * n_per_side);
    for &y in &side {
        for &x in &side {
            out.push([x, y]);
        }
    }
    out
}

/// One grid per crop layer: layer `i` has `int(n_per_side / scale_per_layer^i)` points a side.
pub fn build_all_layer_point_grids(
    n_per_side: usize,
    n_layers: usize,
    scale_per_layer: usize,
) -> Vec<Vec<[f64; 2]>> {
    (0..=n_layers)
        .map(|i| {
            let div = (scale_per_layer.max(1) as f64).powi(i as i32);
            build_point_grid((n_per_side as f64 / div) as usize)
        })
        .collect()
}
