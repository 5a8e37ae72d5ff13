#!/usr/bin/env bash
# Peak resident memory of loading SAM ViT-H and encoding one 1024x1024 image: segany
# (examples/encode_mem.rs) and, for reference, official segment-anything loading the same
# safetensors file (benches/compare/refs.py mem). Issue #7's target: segany's peak ≤ 1.3× the
# weights' file size.
#
#   benches/compare/mem.sh [OUT]        # OUT default target/compare/mem-<UTC time>
#
# Makes random ViT-H weights in Meta layout (2.56 GB) under $WORK (default
# $TMPDIR/segany-mem) unless WEIGHTS names an existing file, and deletes the file it made
# at the end (KEEP=1 keeps it). Needs a Python with torch, segment-anything, safetensors.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
THREADS=${THREADS:-2}
TARGET=${CARGO_TARGET_DIR:-target}
OUT=${1:-$TARGET/compare/mem-$(date -u +%Y%m%dT%H%M%SZ)}
WORK=${WORK:-${TMPDIR:-/tmp}/segany-mem}
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
mkdir -p "$OUT/raw" "$WORK"
made=0
if [ -z "${WEIGHTS:-}" ]; then
  WEIGHTS=$WORK/sam_vit_h.safetensors
  if [ ! -f "$WEIGHTS" ]; then
    made=1
    "$PY" - "$WEIGHTS" <<'PYEOF'
import sys
sys.path.insert(0, "benches/compare")
from refs import randomize
from safetensors.torch import save_file
from segment_anything import sam_model_registry
sam = sam_model_registry["vit_h"]()
randomize(sam, 4)
save_file({k: v.contiguous() for k, v in sam.state_dict().items()}, sys.argv[1])
PYEOF
  fi
fi
cargo build --release --example encode_mem
"$TARGET/release/examples/encode_mem" --model "$WEIGHTS" | tee "$OUT/raw/mem_segany.json"
"$PY" benches/compare/refs.py mem --model "$WEIGHTS" --variant vit_h --work "$WORK" \
  --out "$OUT/raw" --threads "$THREADS"
if [ "$made" = 1 ] && [ "${KEEP:-0}" != 1 ]; then rm -f "$WEIGHTS"; fi
echo "results in $OUT/raw/mem_{segany,torch}.json"
