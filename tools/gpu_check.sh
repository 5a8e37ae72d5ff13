#!/usr/bin/env bash
# Runs the CUDA checks and timings on a machine with an NVIDIA GPU and no Rust toolchain, from
# binaries built elsewhere with `--features cuda` (tools/build_cuda_binaries.sh, unpacked):
#   1. the parity tests on the GPU (SEGANY_TEST_DEVICE=cuda): sam_parity, mobilesam_parity,
#      amg_parity, device_parity and CLIP's parity_layouts against the official outputs in
#      tests/fixtures, CLIP's golden_surgery against the CLIP Surgery golden file (GOLDEN_DIR,
#      default the repository's .golden folder when it holds the file, else the test skips and
#      says so), referring_pipeline's device test against the CPU, and the SAM encoder's unit
#      tests (segany_sam_encoder: its CUDA kernels against the CPU composition);
#   2. official segment-anything on the same GPU (benches/compare/gpu_refs.py), which also
#      writes the random ViT-B / ViT-H weights;
#   3. benches/gpu.rs on those weights: f32 / f16 / bf16 times, checked against the CPU and
#      against segment-anything.
# usage: tools/gpu_check.sh BIN_DIR OUT_DIR [models]   (BIN_DIR holds the binaries, named
# after their tests and `gpu`, as tools/build_cuda_binaries.sh packs them; a `.whl` folder in
# the repository root with segment_anything's wheel is installed when the module is missing)
set -uo pipefail
bin=${1:?BIN_DIR}; out=${2:?OUT_DIR}; models=${3:-vit_b,vit_h}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"

# The CUDA 13 libraries the binaries link (cuBLAS, cuRAND, NVRTC, the runtime): wherever the
# machine keeps them (PyTorch's wheels here).
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
    if ! ldconfig -p | grep -q "$lib"; then
        found=$(find / -name "$lib" -not -path "/proc/*" 2>/dev/null | head -1)
        [ -n "$found" ] && export LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
done
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"

# The test binaries look for tests/fixtures under the path they were built in (BUILT_IN,
# default /work/main).
built_in=${BUILT_IN:-/work/main}
if [ "$built_in" != "$root" ] && [ ! -e "$built_in" ]; then
    mkdir -p "$(dirname "$built_in")" && ln -s "$root" "$built_in"
fi

if [ -z "${GOLDEN_DIR:-}" ] && [ -e "$root/.golden/clip_surgery_seed3.safetensors" ]; then
    export GOLDEN_DIR="$root/.golden"
fi
echo "GOLDEN_DIR=${GOLDEN_DIR:-}"

status=0
for t in sam_parity mobilesam_parity amg_parity device_parity referring_pipeline \
    parity_layouts golden_surgery segany_sam_encoder; do
    echo "== $t on cuda"
    SEGANY_TEST_DEVICE=cuda "$bin/$t" --test-threads 1 --nocapture >"/tmp/$t.log" 2>&1
    rc=$?; [ $rc -ne 0 ] && status=$rc
    grep -E "test result|panicked" "/tmp/$t.log" | head -5
    { echo "== $t"; cat "/tmp/$t.log"; } >>"$out/tests.log"
done

if ! python3 -c "import segment_anything" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site "$root"/.whl/segment_anything-*.whl
    export PYTHONPATH=/tmp/site
fi
refs=/tmp/segany_gpu
PYTHONUNBUFFERED=1 python3 "$root/benches/compare/gpu_refs.py" --models "$models" --out "$refs" 2>&1 | tee "$out/torch.log"
cp "$refs"/torch_*.json "$out/" 2>/dev/null
SEGANY_GPU_DIR=$refs SEGANY_GPU_MODELS=$models "$bin/gpu" 2>&1 | tee "$out/segany.log"
rc=${PIPESTATUS[0]}; [ $rc -ne 0 ] && status=$rc
cp "$refs/gpu_segany.json" "$out/" 2>/dev/null
exit $status
