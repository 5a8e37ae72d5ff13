//! The machine's f32 matmul speed through candle's CPU matmul (the `gemm` crate), for the
//! comparison's "fraction of peak" line: a 2048³ sgemm (17.2 GFLOP per call) and the shapes of
//! the SAM ViT-B encoder's biggest products (a 64×64 grid of 768-wide tokens times the
//! 768→3072 MLP weight; windowed QKᵀ of 25 windows × 12 heads × 196×64·64×196).
//! Throughput is reported in FLOP (criterion prints it as elem/s: read G elem/s as GFLOP/s).
//!
//! `peak/fma_f32`: the machine's f32 multiply-add peak, twelve independent FMA chains per
//! thread (AVX-512 where the CPU has it, else AVX2+FMA) on as many OS threads as rayon has
//! (`RAYON_NUM_THREADS`): the ceiling the products are measured against
//! (`FMA_FLOP_PER_THREAD` FLOP per thread and call).
//!
//! `sgemm_split`: products of the shapes CLIP's text tower (77 rows) and the SSP-SAM head (325
//! rows) run, and 2048³, into a reused buffer: through segany's `matmul_into` (one serial gemm
//! call per column block and thread, up to 4 threads) and through the gemm crate's own split
//! (`Parallelism::Rayon`), the choice `segany_core::nn::matmul` makes.
//!
//! `cargo bench --bench sgemm` (threads: `RAYON_NUM_THREADS`)

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use segany_core::nn::{matmul_into, MatRef};
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

    let mut g = c.benchmark_group("sgemm_split");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    let threads = rayon::current_num_threads();
    for (m, k, n) in [
        (77, 768, 3072),
        (77, 3072, 768),
        (325, 256, 2048),
        (325, 2048, 256),
        (2048, 2048, 2048),
    ] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 11) as f32 * 0.1).collect();
        let mut out = vec![0f32; m * n];
        let av = MatRef::row_major(&a, m, k).expect("a");
        let bv = MatRef::row_major(&b, k, n).expect("b");
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        g.bench_function(format!("segany_{m}x{k}x{n}"), |bch| {
            bch.iter(|| matmul_into(&mut out, n, av, bv, 1.0, true).expect("matmul"))
        });
        g.bench_function(format!("gemm_rayon_{m}x{k}x{n}"), |bch| {
            // SAFETY: row-major m×k, k×n and m×n buffers of exactly those sizes.
            bch.iter(|| unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    out.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(threads),
                )
            })
        });
    }
    g.finish();
}

/// FLOP of one thread in one call of `peak/fma_f32` (12 chains × 16 lanes × 2 per FMA).
const FMA_FLOP_PER_THREAD: usize = FMA_ITERS * 12 * 16 * 2;
const FMA_ITERS: usize = 10_000_000;

/// Twelve chains of `FMA_ITERS` 16-lane FMAs (two 8-lane ones per step without AVX-512).
fn fma_chains() -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512() -> f32 {
            let mut acc = [_mm512_set1_ps(0.0); 12];
            let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
            for _ in 0..FMA_ITERS {
                for c in acc.iter_mut() {
                    *c = _mm512_fmadd_ps(*c, a, b);
                }
            }
            acc.iter().map(|&c| _mm512_reduce_add_ps(c)).sum()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2() -> f32 {
            let mut acc = [_mm256_set1_ps(0.0); 12];
            let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
            for _ in 0..2 * FMA_ITERS {
                for c in acc.iter_mut() {
                    *c = _mm256_fmadd_ps(*c, a, b);
                }
            }
            let mut out = [0f32; 8];
            acc.iter().fold(0.0, |s, &c| {
                _mm256_storeu_ps(out.as_mut_ptr(), c);
                s + out.iter().sum::<f32>()
            })
        }
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512 F.
            return unsafe { avx512() };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { avx2() };
        }
    }
    f32::NAN
}

fn peak(c: &mut Criterion) {
    let threads = rayon::current_num_threads();
    let mut g = c.benchmark_group("peak");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements((threads * FMA_FLOP_PER_THREAD) as u64));
    g.bench_function("fma_f32", |b| {
        // One OS thread each (a rayon task may wait for a sleeping worker).
        b.iter(|| {
            std::thread::scope(|s| {
                let all: Vec<_> = (0..threads).map(|_| s.spawn(fma_chains)).collect();
                all.into_iter()
                    .map(|h| h.join().unwrap_or(f32::NAN))
                    .sum::<f32>()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, peak, bench);
criterion_main!(benches);
