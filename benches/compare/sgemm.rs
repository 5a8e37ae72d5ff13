//! The machine's f32 matmul speed through candle's CPU matmul (the `gemm` crate), for the
//! comparison's "fraction of peak" line: a 2048³ sgemm (17.2 GFLOP per call) and the shapes of
//! the SAM ViT-B encoder's biggest products (a 64×64 grid of 768-wide tokens times the
//! 768→3072 MLP weight; windowed QKᵀ of 25 windows × 12 heads × 196×64·64×196).
//! Throughput is reported in FLOP (criterion prints it as elem/s: read G elem/s as GFLOP/s).
//!
//! `cargo bench --bench sgemm` (threads: `RAYON_NUM_THREADS`)

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut g = c.benchmark_group("sgemm");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    let shapes: [(&str, usize, usize, usize, usize); 3] = [
        ("square_2048", 1, 2048, 2048, 2048),
        ("vit_b_mlp_4096x768x3072", 1, 4096, 768, 3072),
        ("vit_b_window_qk_300x196x64x196", 300, 196, 64, 196),
    ];
    for (name, b, m, k, n) in shapes {
        let a = Tensor::randn(0f32, 1.0, (b, m, k), &dev).expect("a");
        let w = Tensor::randn(0f32, 1.0, (b, k, n), &dev).expect("b");
        g.throughput(Throughput::Elements((2 * b * m * k * n) as u64));
        g.bench_function(name, |bch| bch.iter(|| a.matmul(&w).expect("matmul")));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
