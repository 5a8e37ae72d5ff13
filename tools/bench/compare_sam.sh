#!/usr/bin/env bash
# Times segany, candle-transformers and the official PyTorch SAM ViT-B in one run and prints
# ratios. Needs a Python with torch + segment-anything (PYTHON=/path/to/python, default python3).
# Criterion's estimates are read from $CARGO_TARGET_DIR (default target)/criterion/sam_vit_b/*/new/estimates.json (mean).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
THREADS=${THREADS:-2}
export RAYON_NUM_THREADS=$THREADS
torch_json=$($PY tools/bench/sam_torch_bench.py --threads "$THREADS")
cargo bench --bench sam --features compare-candle -- --noplot
$PY - "$torch_json" "${CARGO_TARGET_DIR:-target}" <<'PYEOF'
import json, sys, pathlib
t = json.loads(sys.argv[1])
def crit(name):
    p = pathlib.Path(sys.argv[2]) / "criterion" / "sam_vit_b" / name / "new" / "estimates.json"
    return json.loads(p.read_text())["mean"]["point_estimate"] / 1e9 if p.exists() else float("nan")
enc, dec = crit("segany_encoder_1024"), crit("segany_decoder_one_point")
ct_enc, ct_dec = crit("candle_transformers_encoder_1024"), crit("candle_transformers_decoder_one_point")
print(f"threads: {t['threads']}")
print(f"encoder  segany {enc:8.3f} s | candle-transformers {ct_enc:8.3f} s | torch {t['torch_encoder_s']:8.3f} s")
print(f"decoder  segany {dec*1e3:8.1f} ms | candle-transformers {ct_dec*1e3:8.1f} ms | torch {t['torch_decoder_s']*1e3:8.1f} ms")
print(f"ratios   encoder segany/candle-transformers {enc/ct_enc:.2f}, segany/torch {enc/t['torch_encoder_s']:.2f}; "
      f"decoder segany/torch {dec/t['torch_decoder_s']:.2f}")
PYEOF
