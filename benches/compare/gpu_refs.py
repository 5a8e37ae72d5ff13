"""Official segment-anything on a CUDA GPU: ViT-B / ViT-H encoder and one prompt in f32, f16, bf16.

Writes, per model, into OUT_DIR (default /tmp/segany_gpu):
  sam_<model>.safetensors   the random weights (Meta layout) that `benches/gpu.rs` loads too;
  ref_<model>.safetensors   the f32 outputs (image embedding, one point prompt's low-res logits
                            and IoU predictions) the Rust results are compared with;
  torch_<model>.json        median and best times per dtype, and each dtype's embedding
                            distance to f32 (max|a-b| / std, as the Rust side measures).

Input: the synthetic 1024x768 image of `benches/sam.rs` (no resize at 1024). f32 runs with TF32
off (matmuls and cuDNN convolutions). The f16/bf16 encoder runs twice: cast to the dtype (as
candle runs it) and under autocast. Times use CUDA events after warm-up; the prompt time is
`SamPredictor.predict` (prompt encoder, mask decoder, upscaling to the image, thresholding, the
masks copied to the host), under autocast for f16/bf16.

usage: python benches/compare/gpu_refs.py [--models vit_b,vit_h] [--out DIR]
"""

import argparse
import copy
import json
import os
import time

import numpy as np
import torch
from safetensors.torch import save_file
from segment_anything import SamPredictor, sam_model_registry

POINT = np.array([[500.0, 375.0]])


def image():
    y, x = np.mgrid[0:768, 0:1024]
    return np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)


def rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.std(unbiased=False))


def timed(fn, warm, reps):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times)), float(min(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="vit_b,vit_h")
    ap.add_argument("--out", default="/tmp/segany_gpu")
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    img = image()
    for name in args.models.split(","):
        torch.manual_seed(0)
        t0 = time.time()
        sam = sam_model_registry[name]()
        with torch.no_grad():
            for p in sam.parameters():
                p.normal_(0.0, 0.02)
        sd = {k: v.contiguous() for k, v in sam.state_dict().items()}
        save_file(sd, os.path.join(args.out, f"sam_{name}.safetensors"))
        print(f"{name}: built and saved in {time.time() - t0:.1f} s", flush=True)
        sam = sam.cuda().eval()
        pred = SamPredictor(sam)
        pred.set_image(img)
        pixels = sam.preprocess(
            torch.as_tensor(pred.transform.apply_image(img), device="cuda").permute(2, 0, 1)[None].float()
        )
        out, report = {}, {"model": name, "device": torch.cuda.get_device_name(), "torch": torch.__version__}
        with torch.no_grad():
            emb32 = sam.image_encoder(pixels).float()
            out["embedding"] = emb32.cpu().contiguous()
            masks, iou, low = pred.predict(POINT, np.array([1]), multimask_output=True)
            out["point.low_res"] = torch.as_tensor(low).contiguous()
            out["point.iou"] = torch.as_tensor(iou).contiguous()
            out["point.masks"] = torch.as_tensor(masks.astype(np.uint8)).contiguous()
            for dtype_name, dtype in [("f32", torch.float32), ("f16", torch.float16), ("bf16", torch.bfloat16)]:
                row = {}
                if dtype == torch.float32:
                    variants = [("encoder", lambda: sam.image_encoder(pixels))]
                else:
                    # The encoder cast to the dtype (as candle runs it), and under autocast.
                    cast = copy.deepcopy(sam.image_encoder).to(dtype)
                    px = pixels.to(dtype)

                    def autocast_encoder(dtype=dtype):
                        with torch.autocast("cuda", dtype=dtype):
                            return sam.image_encoder(pixels)

                    variants = [("encoder", lambda: cast(px)), ("encoder_autocast", autocast_encoder)]
                for key, fn in variants:
                    med, best = timed(fn, 3, args.reps)
                    row[f"{key}_ms"], row[f"{key}_best_ms"] = med, best
                    row[f"{key}_embedding_rel_err"] = rel(fn().float(), emb32)

                # One prompt under autocast for f16/bf16 (the official prompt encoder cannot run
                # cast to a half dtype: it multiplies f32 coordinates by its Gaussian matrix).
                # `predict_torch` + the host copies of `predict`, whose numpy step refuses bf16.
                coords = torch.as_tensor(pred.transform.apply_coords(POINT, pred.original_size),
                                         dtype=torch.float, device="cuda")[None]
                labels = torch.ones((1, 1), dtype=torch.int, device="cuda")

                def prompt(dtype=dtype):
                    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                        masks, iou, low = pred.predict_torch(coords, labels, multimask_output=True)
                    return masks[0].cpu(), iou[0].float().cpu(), low[0].float().cpu()

                row["prompt_ms"], row["prompt_best_ms"] = timed(prompt, 5, 50)
                row["low_res_rel_err"] = rel(prompt()[2], out["point.low_res"])
                report[dtype_name] = row
                print(f"{name} {dtype_name}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items()), flush=True)
                if dtype != torch.float32:
                    del cast
                    torch.cuda.empty_cache()
        report["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        save_file(out, os.path.join(args.out, f"ref_{name}.safetensors"))
        with open(os.path.join(args.out, f"torch_{name}.json"), "w") as f:
            json.dump(report, f, indent=1)
        del sam, pred
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
