#!/usr/bin/env bash
# Runs the kernel and parity tests on emulated CPUs without AVX-512, to confirm that the
# runtime-dispatched code paths run there and pass the same tests:
#
#   Haswell   AVX2 + FMA, no AVX-512: the `wide` builds of segany's kernels and gemm's AVX2
#             kernels (`avx512f`/`avx512bf16` not detected, so bf16 products stay off);
#   Nehalem   SSE4.2 only: the baseline builds of segany's kernels and gemm's scalar/SSE path.
#
# Uses QEMU user-mode emulation (`qemu-x86_64 -cpu MODEL`, Debian's `qemu-user`, installed
# with apt-get when missing) as cargo's runner, so the test binaries see the emulated CPUID.
# Emulation is 10-50x slower than the host: the selection covers every member crate's tests
# (all SIMD kernels and their f64 references, the CLIP and SSP-SAM parity and golden tests)
# and the root package's SAM, MobileSAM and automatic-mask parity tests on tiny
# configurations (15-20 minutes per CPU model on a 2-core machine); doc tests are not run
# (they would run natively).
#
# Usage: tools/check_cpu_fallbacks.sh [CPU_MODEL ...]   (default: Haswell Nehalem)
# Environment: GOLDEN_DIR as for `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(uname -m)" != x86_64 ]; then
    echo "check_cpu_fallbacks: x86_64 hosts only (found $(uname -m))" >&2
    exit 2
fi
if ! command -v qemu-x86_64 >/dev/null; then
    echo "installing qemu-user (QEMU user-mode emulation)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user >/dev/null || {
        echo "check_cpu_fallbacks: could not install qemu-user; install it and rerun" >&2
        exit 2
    }
fi
export GOLDEN_DIR="${GOLDEN_DIR:-../shared/golden}"

models=("$@")
[ ${#models[@]} -gt 0 ] || models=(Haswell Nehalem)

# Every member crate's unit and integration tests; the root package's unit tests and its
# parity tests of SAM, MobileSAM and the automatic mask generator (the referring pipeline's
# test takes over 10 minutes emulated; its CLIP and SSP-SAM parts are in the crates' tests).
crates=()
for dir in crates/*/; do crates+=(-p "$(basename "$dir")"); done
root_tests=(--lib --test sam_parity --test mobilesam_parity --test amg_parity)

cargo test --release --no-run "${crates[@]}" --lib --tests >/dev/null 2>&1 ||
    cargo test --release --no-run "${crates[@]}" --lib --tests
cargo test --release --no-run -p segany "${root_tests[@]}" >/dev/null 2>&1 ||
    cargo test --release --no-run -p segany "${root_tests[@]}"

status=0
for model in "${models[@]}"; do
    echo "== emulated CPU: $model"
    log="target/cpu-fallbacks-$model.log"
    start=$(date +%s)
    runner="qemu-x86_64 -cpu $model"
    # Both runs happen whatever the first one's outcome.
    verdict=ok
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$runner" \
        cargo test --release --no-fail-fast "${crates[@]}" --lib --tests >"$log" 2>&1 ||
        verdict=FAILED
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$runner" \
        cargo test --release --no-fail-fast -p segany "${root_tests[@]}" >>"$log" 2>&1 ||
        verdict=FAILED
    [ "$verdict" = ok ] || status=1
    # QEMU warns once per process about host features it cannot emulate; leave those out.
    grep -v "TCG doesn't support" "$log" | grep -E "FAILED|panicked" || true
    counts=$({ grep -E "^test result" "$log" || true; } |
        awk '{for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i }}
             END { printf "%d passed, %d failed", p, f }')
    echo "$model: $verdict, $counts, $(($(date +%s) - start)) s (log: $log)"
done
exit $status
