#!/usr/bin/env bash
# One comparison run: segany against the reference implementations on identical inputs (the same
# random SAM ViT-B weights in Meta layout, the same 1024x768 / 1024x1024 images, the same random
# CLIP ViT-L/14@336 weights and token ids), all with the same thread count, in one go so the
# ratios come from one period of the machine.
#
#   benches/compare/run.sh                    # THREADS=2 REPEATS=2 by default
#
# References (benches/compare/refs.py, needs a Python with torch, segment-anything,
# transformers, open_clip_torch, onnx, onnxruntime, pycocotools, safetensors; PYTHON=...):
# official segment-anything, transformers SamModel, ONNX Runtime on the exported official
# encoder and decoder, the official SamAutomaticMaskGenerator, transformers CLIPModel and
# open_clip, the SSP-SAM head re-stated in PyTorch on the golden files (GOLDEN_DIR; checked
# against the official outputs stored there before it is timed), pycocotools, a 2048³ sgemm
# in PyTorch. Rust (criterion, --quick): segany, and
# candle-transformers' segment_anything through `--features compare-candle`, candle's sgemm;
# automatic mask generation as single runs (benches/amg.rs with SEGANY_BENCH_AMG_ONCE), as the
# official generator (about a minute per generation on 2 cores). `cargo bench --bench rle`
# is not part of the run (pycocotools' times on the same masks are in raw/pycocotools_rle.json).
#
# Environment: AMG_CONFIGS (default, upscale_all, keep_all, comma-separated, or none to skip
# AMG; default `default,upscale_all`),
# THREADS (RAYON_NUM_THREADS / torch.set_num_threads / ORT intra-op, default 2),
# REPEATS (timed runs per reference measurement after one warm-up, default 2), WORK (weights and
# ONNX files, default $TMPDIR/segany-compare, ~4 GB, reused), OUT (default
# target/compare/<UTC time>), CARGO_TARGET_DIR. Writes OUT/results.json, OUT/table.md,
# OUT/raw/*.json and OUT/cargo_bench.log, and copies the table and JSON to
# benches/compare/results/latest.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-2}
# keep_all (every one of the 3,072 masks through stability, RLE and NMS) takes > 10 min per
# implementation on 2 loaded cores; with random weights `default` keeps no mask (decoder only
# for segany, which upscales only masks that pass the IoU filter), `upscale_all` upscales and
# scores every mask and keeps none (the work real weights, whose IoU predictions pass the
# filter for most points, cause).
AMG_CONFIGS=${AMG_CONFIGS:-default,upscale_all}
WORK=${WORK:-${TMPDIR:-/tmp}/segany-compare}
TARGET=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$TARGET/compare/$(date -u +%Y%m%dT%H%M%SZ)}
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
mkdir -p "$OUT/raw"
log() { echo "[$(date -u +%H:%M:%S)] $*"; }

log "building the benches"
cargo bench --no-run --features compare-candle --bench sam --bench amg --bench sgemm --bench ssp
cargo bench --no-run -p segany-clip --bench clip

start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
refs() { log "refs $1"; "$PY" benches/compare/refs.py "$1" --work "$WORK" --out "$OUT/raw" --threads "$THREADS" --repeats "$REPEATS" --amg-configs "$AMG_CONFIGS"; }
refs prepare
start=$(date +%s)
refs sgemm
refs sam_official
refs sam_hf
refs sam_onnx
refs mobilesam
[ "$AMG_CONFIGS" = none ] || refs amg
refs clip
refs ssp
refs rle

export SEGANY_BENCH_SAM_WEIGHTS=$WORK/sam_vit_b.safetensors
export SEGANY_BENCH_TINY_VIT_WEIGHTS=$WORK/mobile_sam_vit_t.safetensors
export SEGANY_BENCH_CLIP_L336=$WORK/clip_vit_l14_336
crit() { # crit <cargo args> -- <filter>
  log "cargo bench $*"
  cargo bench "$@" 2>&1 | tee -a "$OUT/cargo_bench.log" | grep -E "^[a-z_0-9]+/|time:|thrpt:|masks kept|rle/" || true
}
crit --bench sgemm -- --quick --noplot
crit --features compare-candle --bench sam -- --quick --noplot
if [ "$AMG_CONFIGS" != none ]; then
  log "amg (single runs)"
  SEGANY_BENCH_AMG_CONFIGS=$AMG_CONFIGS SEGANY_BENCH_AMG_ONCE=$(realpath "$OUT")/raw/amg_segany.json cargo bench --bench amg | tee -a "$OUT/cargo_bench.log"
fi
crit -p segany-clip --bench clip -- --quick --noplot clip_vit_l14_336
crit --bench ssp -- --quick --noplot ssp_head

cat > "$OUT/machine.json" <<JSON
{"cpu": "$(lscpu | sed -n 's/^Model name: *//p' | head -1)",
 "cpu_family_model": "$(awk -F': ' '/^cpu family/ {f=$2} /^model\t/ {m=$2} END {print f "/" m}' /proc/cpuinfo)",
 "cores": $(nproc), "threads": $THREADS, "repeats": $REPEATS,
 "flags_avx512f": $(grep -q avx512f /proc/cpuinfo && echo true || echo false),
 "memory_gib": $(awk '/MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo),
 "kernel": "$(uname -r)", "rustc": "$(rustc --version)",
 "git": "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!benches/compare/results' || echo +dirty)",
 "date": "$(date -u +%Y-%m-%dT%H:%MZ)", "load_start": "$load_start",
 "load_end": "$(cut -d' ' -f1-3 /proc/loadavg)", "seconds": $(( $(date +%s) - start ))}
JSON
"$PY" benches/compare/report.py --out "$OUT" --target "$TARGET" --since "$start"
mkdir -p benches/compare/results
cp "$OUT/table.md" benches/compare/results/latest.md
cp "$OUT/results.json" benches/compare/results/latest.json
log "done in $(( $(date +%s) - start )) s: $OUT"
