#!/usr/bin/env python3
"""Time MobileSAM's TinyViT-5M image encoder (reference PyTorch code from `mobilesam-mirror`,
`sam_model_registry["vit_t"]`, random weights) at 1024², on the same synthetic 1024x768 input as
benches/sam.rs, through `SamPredictor.set_image` (resize + normalise + encoder), and the
encoder alone on the prepared 1024² tensor. Optionally the official ViT-B encoder beside it.

Prints JSON: {"mobilesam_set_image_s", "mobilesam_encoder_s", ["vit_b_encoder_s",] "threads",
"repeats", "torch"} (minimum over repeats).
Usage: python tools/bench/mobilesam_torch_bench.py [--threads N] [--repeats R] [--vit-b]
"""
import argparse
import json
import time
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")
from mobile_sam import SamPredictor, sam_model_registry  # noqa: E402


def timed(fn, repeats):
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--vit-b", action="store_true", help="also time segment-anything's ViT-B encoder")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    sam = sam_model_registry["vit_t"]().eval()
    x, y = np.meshgrid(np.arange(1024), np.arange(768))
    img = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
    pred = SamPredictor(sam)
    res = {"threads": a.threads, "repeats": a.repeats, "torch": torch.__version__}
    with torch.no_grad():
        pred.set_image(img)  # warm-up
        res["mobilesam_set_image_s"] = timed(lambda: pred.set_image(img), a.repeats)
        inp = sam.preprocess(torch.as_tensor(pred.transform.apply_image(img)).permute(2, 0, 1)[None].float())
        res["mobilesam_encoder_s"] = timed(lambda: sam.image_encoder(inp), a.repeats)
        if a.vit_b:
            from segment_anything import sam_model_registry as official
            vit_b = official["vit_b"]().eval()
            vit_b.image_encoder(inp)
            res["vit_b_encoder_s"] = timed(lambda: vit_b.image_encoder(inp), max(1, a.repeats // 2))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
