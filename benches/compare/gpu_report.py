"""Table of `benches/gpu.rs` (gpu_segany.json) beside official segment-anything on the same GPU
(torch_<model>.json from gpu_refs.py): markdown on stdout.

usage: python benches/compare/gpu_report.py DIR   (the folder tools/gpu_check.sh filled)
"""

import json
import os
import sys


def main():
    d = sys.argv[1]
    ours = json.load(open(os.path.join(d, "gpu_segany.json")))
    gpu = open(os.path.join(d, "gpu.txt")).read().strip().splitlines()[-1] if os.path.exists(
        os.path.join(d, "gpu.txt")) else "?"
    print(f"GPU: {gpu}\n")
    print("| model | dtype | segany encoder | official (cast) | official (autocast) | segany / official cast "
          "| segany one prompt | official one prompt | segany embedding vs CPU f32 | official embedding vs its f32 "
          "| segany low-res logits vs CPU f32 | masks agree with CPU f32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for model, rows in ours.items():
        ref = json.load(open(os.path.join(d, f"torch_{model}.json")))
        for dtype in ["f32", "f16", "bf16"]:
            r, t = rows.get(dtype), ref.get(dtype)
            if r is None or t is None:
                continue
            auto = t.get("encoder_autocast_ms")
            official_err = t.get("encoder_embedding_rel_err")
            print(f"| {model} | {dtype} | {r['encoder_ms']:.1f} ms | {t['encoder_ms']:.1f} ms | "
                  f"{'–' if auto is None else f'{auto:.1f} ms'} | {r['encoder_ms'] / t['encoder_ms']:.2f} | "
                  f"{r['prompt_ms']:.2f} ms | {t['prompt_ms']:.2f} ms | {r['embedding_vs_cpu']:.1e} | "
                  f"{'–' if dtype == 'f32' else f'{official_err:.1e}'} | {r['logits_vs_cpu']:.1e} | "
                  f"{r['mask_agreement_vs_cpu']:.5f} |")
        cpu = rows.get("cpu_f32", {})
        if "embedding_vs_torch" in cpu:
            print(f"| {model} | CPU f32 vs official CUDA f32 | {cpu['encoder_ms']:.0f} ms (16 threads) | | | | | | "
                  f"{cpu['embedding_vs_torch']:.1e} (vs official) | | {cpu['logits_vs_torch']:.1e} (vs official) | |")


if __name__ == "__main__":
    main()
