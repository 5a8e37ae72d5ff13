//! COCO run-length encoding benchmarks (`segany_data::mask`, bit-exact with pycocotools) on
//! masks shaped like real ones:
//!
//! * `object`: one large smooth object (an ellipse with a notch), few runs per column;
//! * `polygons`: the union of 12 COCO-like polygons rasterised by `Rle::from_polygon`;
//! * `texture`: a thresholded sum of sines with a hundred-odd blobs (fragmented SAM masks, many
//!   runs per column, the worst case for run lengths).
//!
//! Each at 1024×1024 (automatic-mask-generation size) and 480×640 (a COCO image). Timed:
//! `encode` (row-major bytes → column-major RLE), `decode`, `area`, `to_string` / `from_string`
//! (the compressed COCO string), and `iou_100x100` (`rle_iou` of 100 detections against 100
//! ground truths, as COCO evaluation does). `cargo bench --bench rle`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use segany_data::mask::{merge, rle_iou, Mask, Rle};
use std::time::Duration;

fn object(h: usize, w: usize) -> Mask {
    let (cy, cx) = (h as f64 * 0.5, w as f64 * 0.45);
    let (ry, rx) = (h as f64 * 0.35, w as f64 * 0.3);
    let mut m = Mask::zeros(h, w);
    for y in 0..h {
        for x in 0..w {
            let (dy, dx) = ((y as f64 - cy) / ry, (x as f64 - cx) / rx);
            let notch = x as f64 > cx && (y as f64 - cy).abs() < ry * 0.15;
            if dy * dy + dx * dx <= 1.0 && !notch {
                m.set(y, x, 1);
            }
        }
    }
    m
}

fn polygons(h: usize, w: usize) -> Mask {
    let (hf, wf) = (h as f64, w as f64);
    let rles: Vec<Rle> = (0..12)
        .map(|i| {
            let (cx, cy) = (
                wf * (0.15 + 0.7 * ((i * 7) % 12) as f64 / 11.0),
                hf * (0.15 + 0.7 * ((i * 5) % 12) as f64 / 11.0),
            );
            let r = hf.min(wf) * (0.05 + 0.01 * i as f64);
            // A 24-vertex star-ish polygon, as annotators draw.
            let xy: Vec<f64> = (0..24)
                .flat_map(|k| {
                    let a = k as f64 * std::f64::consts::TAU / 24.0;
                    let rr = r * if k % 2 == 0 { 1.0 } else { 0.7 };
                    [cx + rr * a.cos(), cy + rr * a.sin()]
                })
                .collect();
            Rle::from_polygon(&xy, h, w).expect("polygon")
        })
        .collect();
    merge(&rles, false)
        .expect("merge")
        .decode()
        .expect("decode")
}

fn texture(h: usize, w: usize) -> Mask {
    let mut m = Mask::zeros(h, w);
    for y in 0..h {
        for x in 0..w {
            let (u, v) = (x as f64 / w as f64, y as f64 / h as f64);
            let s = (u * 37.0).sin() + (v * 29.0).sin() + (u * 11.0 + v * 13.0).sin();
            if s > 0.9 {
                m.set(y, x, 1);
            }
        }
    }
    m
}

/// `n` distinct masks: `base` shifted down by `k` rows and right by `2k` columns.
fn shifted(base: &Mask, n: usize) -> Vec<Rle> {
    let (h, w) = (base.height(), base.width());
    (0..n)
        .map(|k| {
            let mut m = Mask::zeros(h, w);
            for y in k..h {
                for x in 2 * k..w {
                    m.set(y, x, base.get(y - k, x - 2 * k));
                }
            }
            Rle::encode(&m).expect("encode")
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    type Maker = fn(usize, usize) -> Mask;
    let makers: [(&str, Maker); 3] = [
        ("object", object),
        ("polygons", polygons),
        ("texture", texture),
    ];
    let mut g = c.benchmark_group("rle");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for (h, w) in [(1024usize, 1024usize), (480, 640)] {
        for (name, make) in makers {
            let mask = make(h, w);
            let rle = Rle::encode(&mask).expect("encode");
            let s = rle.to_string();
            let id = format!("{name}_{h}x{w}");
            println!(
                "rle/{id}: area {}, {} runs, {} string bytes",
                rle.area(),
                rle.counts().len(),
                s.len()
            );
            g.throughput(Throughput::Elements((h * w) as u64));
            g.bench_with_input(BenchmarkId::new("encode", &id), &mask, |b, m| {
                b.iter(|| Rle::encode(m).expect("encode"))
            });
            g.bench_with_input(BenchmarkId::new("decode", &id), &rle, |b, r| {
                b.iter(|| r.decode().expect("decode"))
            });
            g.throughput(Throughput::Elements(rle.counts().len() as u64));
            g.bench_with_input(BenchmarkId::new("area", &id), &rle, |b, r| {
                b.iter(|| r.area())
            });
            g.bench_with_input(BenchmarkId::new("to_string", &id), &rle, |b, r| {
                b.iter(|| r.to_string())
            });
            g.bench_with_input(BenchmarkId::new("from_string", &id), &s, |b, s| {
                b.iter(|| Rle::from_string(s, h, w).expect("from_string"))
            });
            if (h, w) == (480, 640) {
                let dt = shifted(&mask, 100);
                let gt: Vec<Rle> = dt.iter().rev().cloned().collect();
                let crowd = vec![false; gt.len()];
                g.throughput(Throughput::Elements((dt.len() * gt.len()) as u64));
                g.bench_function(BenchmarkId::new("iou_100x100", &id), |b| {
                    b.iter(|| rle_iou(&dt, &gt, &crowd))
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
