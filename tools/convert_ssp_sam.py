#!/usr/bin/env python3
"""Convert a released SSP-SAM checkpoint to safetensors + config.json for segany.

The official training script saves ``{'model': state_dict, 'epoch': ..., 'args': ...[,
'optimizer', 'lr_scheduler']}`` as ``checkpoint_best_miou.pth``. This script writes, into
``--out DIR``:

* ``model.safetensors`` -- the state dict under its official key names (``text_proj.*``,
  ``phrase_attn.fc.*``, ``clip_img_proj.layers.N.*``, ``img2text_attn.*``,
  ``vl_transformer.encoder.layers.N.*``, ``vl_pos_embed.weight``, ``sam.prompt_encoder.*``,
  ``sam.mask_decoder.*``, ...). A ``module.`` prefix (DistributedDataParallel) is stripped.
  ``encoder.*`` (the CLIP copy, which the official ``test.py`` drops too; CLIP always comes from
  the CS-ViT / OpenAI weights) is dropped, and so is ``sam.image_encoder.*`` (the frozen,
  unmodified SAM ViT-H; segany loads SAM separately) unless ``--keep-sam-encoder`` is given.
  Unused stored modules (``img2img_attn.*``, ``norm_text_cond_img.*``) are kept; the loader
  ignores them.
* ``config.json`` -- the variant (``clip_dim``, ``image_size``, ``patch_size``), read off the
  shapes: ``vl_pos_embed.weight`` has 1 + 128 + P^2 rows (325 -> 224 px ViT-B/16,
  705 -> 336 px ViT-L/14) and ``clip_proj.weight`` is ``[512, C]``.

Usage::

    python tools/convert_ssp_sam.py checkpoint_best_miou.pth --out ssp-sam-336/
    cargo run --release --example refer -- --ssp ssp-sam-336/ ...

Requires ``torch`` and ``safetensors``. Loading uses ``weights_only=True`` first and falls back
to full unpickling (the checkpoint stores an ``argparse.Namespace``) only with ``--trust``.
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file

VARIANTS = {325: (224, 16), 705: (336, 14)}
DROP_ALWAYS = ("encoder.",)
SAM_ENCODER = "sam.image_encoder."


def load_state_dict(path, trust):
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several types here
        if not trust:
            sys.exit(
                f"{path}: cannot load with weights_only=True ({type(e).__name__}: {e}).\n"
                "The released checkpoints pickle an argparse.Namespace; rerun with --trust "
                "if you trust the file."
            )
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(ckpt, dict) and "model" in ckpt and isinstance(ckpt["model"], dict):
        sd = ckpt["model"]
    elif isinstance(ckpt, dict):
        sd = ckpt
    else:
        sys.exit(f"{path}: expected a dict with a 'model' state dict, got {type(ckpt).__name__}")
    return sd


def convert(sd, keep_sam_encoder=False, dtype=torch.float32):
    out = {}
    dropped = 0
    for k, v in sd.items():
        if not torch.is_tensor(v):
            continue
        if k.startswith("module."):
            k = k[len("module."):]
        if k.startswith(DROP_ALWAYS) or (not keep_sam_encoder and k.startswith(SAM_ENCODER)):
            dropped += 1
            continue
        v = v.detach().cpu()
        if v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.contiguous()
    return out, dropped


def infer_config(sd):
    pos = sd.get("vl_pos_embed.weight")
    if pos is None:
        sys.exit("state dict has no vl_pos_embed.weight: is this an SSP-SAM checkpoint?")
    rows = pos.shape[0]
    if rows not in VARIANTS:
        sys.exit(f"vl_pos_embed.weight has {rows} rows; expected 325 (224 px) or 705 (336 px)")
    image_size, patch_size = VARIANTS[rows]
    clip = sd.get("clip_proj.weight")
    if clip is None:
        sys.exit("state dict has no clip_proj.weight")
    return {"clip_dim": int(clip.shape[1]), "image_size": image_size, "patch_size": patch_size}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="checkpoint_best_miou.pth (or any SSP-SAM .pth)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--keep-sam-encoder", action="store_true",
                    help="keep sam.image_encoder.* (the unmodified SAM ViT-H)")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32",
                    help="storage dtype of floating tensors (default f32)")
    ap.add_argument("--trust", action="store_true",
                    help="allow full unpickling when weights_only loading fails")
    args = ap.parse_args(argv)

    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    sd = load_state_dict(args.checkpoint, args.trust)
    tensors, dropped = convert(sd, args.keep_sam_encoder, dtype)
    config = infer_config(tensors)
    os.makedirs(args.out, exist_ok=True)
    meta = {
        "format": "segany-ssp-sam/1",
        "source": os.path.basename(args.checkpoint),
        "variant": str(config["image_size"]),
    }
    save_file(tensors, os.path.join(args.out, "model.safetensors"), metadata=meta)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    print(f"wrote {len(tensors)} tensors ({dropped} dropped), variant {config['image_size']} px "
          f"(CLIP width {config['clip_dim']}) to {args.out}")


if __name__ == "__main__":
    main()
