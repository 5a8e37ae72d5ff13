#!/usr/bin/env bash
# Builds, with `--features cuda`, the binaries tools/gpu_check.sh runs on a GPU machine (the
# parity tests sam_parity, mobilesam_parity, amg_parity, device_parity, referring_pipeline,
# CLIP's parity_layouts and golden_surgery, the SAM encoder's unit tests with its CUDA kernel
# test, and the gpu bench), and packs them stripped into OUT/bins.tar.xz (≈ 15 MB: they share
# most of their code).
# Needs nvcc and the CUDA libraries to link against (CUDA_HOME; CUDA_COMPUTE_CAP picks the
# kernels' architecture, e.g. 90 for an H100). The GPU machine needs no Rust toolchain.
# usage: tools/build_cuda_binaries.sh OUT
set -euo pipefail
out=${1:?OUT}
mkdir -p "$out/bin"
log=$(mktemp)
cargo test --release --features cuda --no-run --test sam_parity --test mobilesam_parity \
    --test amg_parity --test device_parity --test referring_pipeline 2>&1 | tee "$log"
cargo test --release -p segany-clip --features cuda --no-run --test parity_layouts \
    --test golden_surgery 2>&1 | tee -a "$log"
cargo test --release -p segany-sam-encoder --features cuda --no-run --lib 2>&1 | tee -a "$log"
cargo bench --features cuda --no-run --bench gpu 2>&1 | tee -a "$log"
for t in sam_parity mobilesam_parity amg_parity device_parity referring_pipeline \
    parity_layouts golden_surgery segany_sam_encoder gpu; do
    f=$(grep -oE "\(.*/deps/$t-[0-9a-f]+\)" "$log" | tail -1 | tr -d '()')
    strip -o "$out/bin/$t" "$f"
done
tar cf - -C "$out/bin" . | xz -T0 --lzma2=preset=6,dict=256MiB >"$out/bins.tar.xz"
rm -rf "$out/bin" "$log"
ls -la "$out/bins.tar.xz"
