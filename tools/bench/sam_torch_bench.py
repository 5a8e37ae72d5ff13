#!/usr/bin/env python3
"""Time the official segment-anything ViT-B (random weights) on the same input as benches/sam.rs:
a 1024x768 synthetic image, encoder at 1024², then one foreground point through
SamPredictor.predict (prompt encoder + mask decoder + post-processing).

Prints JSON: {"torch_encoder_s": ..., "torch_decoder_s": ..., "threads": ...}.
Usage: python tools/bench/sam_torch_bench.py [--threads N] [--repeats R]
"""
import argparse
import json
import time

import numpy as np
import torch
from segment_anything import SamPredictor, sam_model_registry


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    sam = sam_model_registry["vit_b"]().eval()
    x, y = np.meshgrid(np.arange(1024), np.arange(768))
    img = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
    pred = SamPredictor(sam)
    enc = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        pred.set_image(img)
        enc.append(time.perf_counter() - t)
    dec = []
    for _ in range(max(10, a.repeats)):
        t = time.perf_counter()
        pred.predict(np.array([[500.0, 375.0]]), np.array([1]), multimask_output=True)
        dec.append(time.perf_counter() - t)
    print(json.dumps({"torch_encoder_s": min(enc), "torch_decoder_s": float(np.median(dec)), "threads": a.threads}))


if __name__ == "__main__":
    main()
