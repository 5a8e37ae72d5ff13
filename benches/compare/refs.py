#!/usr/bin/env python3
"""Reference timings for benches/compare/run.sh, one subcommand per reference, each writing one
JSON file. Every reference gets the same inputs as the Rust benches:

* SAM ViT-B: the random Meta-layout weights written by ``prepare`` (``sam_vit_b.safetensors``),
  loaded into the official ``segment_anything`` model, converted key by key into transformers'
  ``SamModel``, and exported (encoder; prompt encoder + decoder via segment-anything's own
  ``SamOnnxModel``) to ONNX for ONNX Runtime. Image: 1024x768 RGB with pixel (x, y) =
  (x % 256, y % 256, (x + y) % 256), as ``benches/sam.rs``; AMG uses the 1024x1024 version.
* MobileSAM TinyViT-5M: random weights of ``mobile_sam``'s ``vit_t`` (``mobilesam-mirror``, the
  MobileSAM reference code) written by ``prepare`` (``mobile_sam_vit_t.safetensors``, Meta/
  ``mobile_sam.pt`` layout), which ``benches/sam.rs`` also loads; the same 1024x768 image.
* CLIP ViT-L/14@336: random open_clip weights (``ViT-L-14-336-quickgelu``), converted to a
  transformers ``CLIPModel`` directory that segany-clip also loads; one 336x336 image and the
  token ids ``[49406, 518, 786, 525, 518, 1823, 269, 49407]`` padded to 77.
* SSP-SAM head (224 and 336): the golden files' weights and inputs (``GOLDEN_DIR``, default
  ``../shared/golden`` beside the repository), run by ``ssp_head_ref.py`` (the official forward
  re-stated on stock ``torch.nn``; not timed unless it reproduces the official outputs stored in
  the same files within 1e-4), as ``benches/ssp.rs`` times segany on the same files.

Encoder times are the model's forward on the pre-processed tensor (as the Rust benches); the
decoder time per prompt is one foreground point at (500, 375) through prompt encoder + mask
decoder + post-processing to the original 1024x768 (3 masks; ONNX's ``SamOnnxModel`` returns
all 4). Each measurement is the median of ``--repeats`` runs after one warm-up.

Usage: python refs.py --work DIR --out DIR --threads N <prepare|sgemm|sam_official|sam_hf|
sam_onnx|mobilesam|amg|clip|ssp|rle|mem> [--repeats R] [--model FILE --variant vit_h]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

SAM_FILE = "sam_vit_b.safetensors"
MOBILESAM_FILE = "mobile_sam_vit_t.safetensors"
CLIP_DIR = "clip_vit_l14_336"
CLIP_IDS = [49406, 518, 786, 525, 518, 1823, 269, 49407]
POINT = (500.0, 375.0)


def image(h=768, w=1024):
    x, y = np.meshgrid(np.arange(w), np.arange(h))
    return np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)


def timeit(fn, repeats, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return {"median_s": statistics.median(ts), "min_s": min(ts), "runs_s": ts}


def flop_count(model, fn):
    """The products' floating-point operations of one call of ``fn`` (2 per multiply-add), as
    ``torch.utils.flop_counter.FlopCounterMode`` counts them (matmuls, linear layers,
    convolutions; element-wise work is not counted). The counter's module tracker refuses
    ``inference_mode``/``no_grad``, so ``model``'s parameters stop requiring gradients instead
    (no autograd graph is kept); the inputs must not be inference tensors."""
    from torch.utils.flop_counter import FlopCounterMode

    model.requires_grad_(False)
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def save(args, name, data):
    data = {"name": name, "threads": args.threads, "torch": torch.__version__, **data}
    path = os.path.join(args.out, f"{name}.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    print(f"{name}: " + json.dumps({k: v for k, v in data.items() if k != "runs_s"})[:600])


# ---------------------------------------------------------------------------------------------
# prepare


def randomize(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            r = torch.randn(p.shape, generator=g) * 0.02
            if name.endswith("weight") and p.dim() == 1:  # norms
                r += 1.0
            p.copy_(r)


def prepare(args):
    from safetensors.torch import save_file

    sam_path = os.path.join(args.work, SAM_FILE)
    if not os.path.exists(sam_path):
        from segment_anything import sam_model_registry

        sam = sam_model_registry["vit_b"]()
        randomize(sam, 0)
        save_file({k: v.contiguous() for k, v in sam.state_dict().items()}, sam_path)
    mobile_path = os.path.join(args.work, MOBILESAM_FILE)
    if not os.path.exists(mobile_path):
        import warnings
        warnings.filterwarnings("ignore")
        from mobile_sam import sam_model_registry as mobile_registry

        mobile = mobile_registry["vit_t"]()
        randomize(mobile, 2)
        save_file({k: v.contiguous() for k, v in mobile.state_dict().items()}, mobile_path)
    clip_dir = os.path.join(args.work, CLIP_DIR)
    if not os.path.exists(os.path.join(clip_dir, "model.safetensors")):
        import open_clip

        oc = open_clip.create_model("ViT-L-14-336-quickgelu", pretrained=None)
        randomize(oc, 1)
        os.makedirs(clip_dir, exist_ok=True)
        save_file({k: v.contiguous() for k, v in oc.state_dict().items()},
                  os.path.join(clip_dir, "open_clip_random.safetensors.src"))
        hf = open_clip_to_hf(oc)
        hf.save_pretrained(clip_dir, safe_serialization=True)
    print(f"prepared {sam_path} and {clip_dir}")


def open_clip_to_hf(oc):
    """A transformers CLIPModel holding open_clip's ViT-L/14@336 weights (QuickGELU)."""
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(
        text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=77, vocab_size=49408,
                         hidden_act="quick_gelu", eos_token_id=49407, projection_dim=768),
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                           num_attention_heads=16, image_size=336, patch_size=14,
                           hidden_act="quick_gelu", projection_dim=768),
        projection_dim=768,
    )
    hf = CLIPModel(cfg).eval()
    sd = oc.state_dict()
    out = {}

    def blocks(src, dst, n):
        for i in range(n):
            s, d = f"{src}.{i}", f"{dst}.{i}"
            q, k, v = sd[f"{s}.attn.in_proj_weight"].chunk(3)
            qb, kb, vb = sd[f"{s}.attn.in_proj_bias"].chunk(3)
            out.update({
                f"{d}.self_attn.q_proj.weight": q, f"{d}.self_attn.k_proj.weight": k,
                f"{d}.self_attn.v_proj.weight": v, f"{d}.self_attn.q_proj.bias": qb,
                f"{d}.self_attn.k_proj.bias": kb, f"{d}.self_attn.v_proj.bias": vb,
                f"{d}.self_attn.out_proj.weight": sd[f"{s}.attn.out_proj.weight"],
                f"{d}.self_attn.out_proj.bias": sd[f"{s}.attn.out_proj.bias"],
                f"{d}.layer_norm1.weight": sd[f"{s}.ln_1.weight"],
                f"{d}.layer_norm1.bias": sd[f"{s}.ln_1.bias"],
                f"{d}.layer_norm2.weight": sd[f"{s}.ln_2.weight"],
                f"{d}.layer_norm2.bias": sd[f"{s}.ln_2.bias"],
                f"{d}.mlp.fc1.weight": sd[f"{s}.mlp.c_fc.weight"],
                f"{d}.mlp.fc1.bias": sd[f"{s}.mlp.c_fc.bias"],
                f"{d}.mlp.fc2.weight": sd[f"{s}.mlp.c_proj.weight"],
                f"{d}.mlp.fc2.bias": sd[f"{s}.mlp.c_proj.bias"],
            })

    blocks("transformer.resblocks", "text_model.encoder.layers", 12)
    blocks("visual.transformer.resblocks", "vision_model.encoder.layers", 24)
    out.update({
        "text_model.embeddings.token_embedding.weight": sd["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": sd["positional_embedding"],
        "text_model.final_layer_norm.weight": sd["ln_final.weight"],
        "text_model.final_layer_norm.bias": sd["ln_final.bias"],
        "text_projection.weight": sd["text_projection"].t(),
        "logit_scale": sd["logit_scale"],
        "vision_model.embeddings.class_embedding": sd["visual.class_embedding"],
        "vision_model.embeddings.patch_embedding.weight": sd["visual.conv1.weight"],
        "vision_model.embeddings.position_embedding.weight": sd["visual.positional_embedding"],
        "vision_model.pre_layrnorm.weight": sd["visual.ln_pre.weight"],
        "vision_model.pre_layrnorm.bias": sd["visual.ln_pre.bias"],
        "vision_model.post_layernorm.weight": sd["visual.ln_post.weight"],
        "vision_model.post_layernorm.bias": sd["visual.ln_post.bias"],
        "visual_projection.weight": sd["visual.proj"].t(),
    })
    missing, unexpected = hf.load_state_dict({k: v.contiguous() for k, v in out.items()},
                                             strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise SystemExit(f"open_clip -> transformers: missing {missing}, unexpected {unexpected}")
    # The conversion must not change the model.
    px = torch.randn(1, 3, 336, 336, generator=torch.Generator().manual_seed(2))
    ids = torch.tensor([CLIP_IDS + [0] * (77 - len(CLIP_IDS))])
    with torch.no_grad():
        a = oc.encode_image(px)
        b = hf.get_image_features(pixel_values=px)
        b = getattr(b, "pooler_output", b)
        ta, tb = oc.encode_text(ids), hf.get_text_features(input_ids=ids)
        tb = getattr(tb, "pooler_output", tb)
    err = max(float((a - b).abs().max() / a.abs().max()), float((ta - tb).abs().max() / ta.abs().max()))
    if err > 1e-4:
        raise SystemExit(f"open_clip -> transformers conversion differs: {err}")
    print(f"open_clip -> transformers CLIP: max rel diff {err:.2e}")
    return hf


# ---------------------------------------------------------------------------------------------
# SAM


def load_official(args):
    from safetensors.torch import load_file
    from segment_anything import sam_model_registry

    sam = sam_model_registry["vit_b"]().eval()
    sam.load_state_dict(load_file(os.path.join(args.work, SAM_FILE)))
    return sam


def official_input(sam, img):
    from segment_anything.utils.transforms import ResizeLongestSide

    t = ResizeLongestSide(sam.image_encoder.img_size)
    x = torch.as_tensor(t.apply_image(img)).permute(2, 0, 1)[None].float()
    return sam.preprocess(x)


def sgemm(args):
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    r = timeit(lambda: a @ b, max(5, args.repeats * 3), warmup=2)
    flop = 2 * n ** 3
    save(args, "torch_sgemm", {**r, "n": n, "gflops_best": flop / r["min_s"] / 1e9,
                               "gflops_median": flop / r["median_s"] / 1e9})


def mobilesam(args):
    """MobileSAM's reference TinyViT-5M encoder (``mobilesam-mirror``) on the prepared weights."""
    import warnings
    warnings.filterwarnings("ignore")
    from mobile_sam import sam_model_registry as mobile_registry
    from safetensors.torch import load_file

    sam = mobile_registry["vit_t"]().eval()
    sam.load_state_dict(load_file(os.path.join(args.work, MOBILESAM_FILE)))
    x = official_input(sam, image())
    with torch.inference_mode():
        enc = timeit(lambda: sam.image_encoder(x), max(3, args.repeats))
    save(args, "mobilesam_official", {"encoder": enc})


def sam_official(args):
    from segment_anything import SamPredictor

    sam = load_official(args)
    img = image()
    x = official_input(sam, img)
    with torch.inference_mode():
        enc = timeit(lambda: sam.image_encoder(x), args.repeats)
        # bf16 matmuls (oneDNN's AVX-512 BF16 kernels), beside segany's opt-in bf16 products.
        with torch.autocast("cpu", dtype=torch.bfloat16):
            enc_bf16 = timeit(lambda: sam.image_encoder(x), args.repeats)
    pred = SamPredictor(sam)
    pred.set_image(img)
    pts, lbl = np.array([POINT]), np.array([1])
    dec = timeit(lambda: pred.predict(pts, lbl, multimask_output=True), max(10, args.repeats))
    # The official encoder's product count in its own layout (windowed blocks on the padded
    # 70x70 grid), beside report.py's counts.
    flop = flop_count(sam, lambda: sam.image_encoder(x.clone()))
    save(args, "sam_official", {"encoder": enc, "encoder_bf16": enc_bf16, "decoder": dec,
                                "encoder_flop": flop})


def meta_to_hf(sd):
    """Meta SAM names -> transformers SamModel names (the inverse of segany-core's map)."""
    out = {}
    pe = sd["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"]
    out["shared_image_embedding.positional_embedding"] = pe
    for k, v in sd.items():
        if k.startswith("image_encoder."):
            r = k[len("image_encoder."):]
            r = (r.replace("patch_embed.proj.", "patch_embed.projection.")
                 .replace("neck.0.", "neck.conv1.").replace("neck.1.", "neck.layer_norm1.")
                 .replace("neck.2.", "neck.conv2.").replace("neck.3.", "neck.layer_norm2."))
            if r.startswith("blocks."):
                r = "layers." + r[len("blocks."):]
                r = r.replace(".norm1.", ".layer_norm1.").replace(".norm2.", ".layer_norm2.")
            out["vision_encoder." + r] = v
        elif k.startswith("prompt_encoder."):
            r = k[len("prompt_encoder."):]
            if r == "pe_layer.positional_encoding_gaussian_matrix":
                out["prompt_encoder.shared_embedding.positional_embedding"] = v
                continue
            r = (r.replace("point_embeddings.", "point_embed.")
                 .replace("mask_downscaling.0.", "mask_embed.conv1.")
                 .replace("mask_downscaling.1.", "mask_embed.layer_norm1.")
                 .replace("mask_downscaling.3.", "mask_embed.conv2.")
                 .replace("mask_downscaling.4.", "mask_embed.layer_norm2.")
                 .replace("mask_downscaling.6.", "mask_embed.conv3."))
            out["prompt_encoder." + r] = v
        elif k.startswith("mask_decoder."):
            r = k[len("mask_decoder."):]
            if r.startswith("transformer."):
                r = (r.replace("norm_final_attn.", "layer_norm_final_attn.")
                     .replace(".norm1.", ".layer_norm1.").replace(".norm2.", ".layer_norm2.")
                     .replace(".norm3.", ".layer_norm3.").replace(".norm4.", ".layer_norm4."))
            elif r.startswith("iou_prediction_head.") or r.startswith("output_hypernetworks_mlps."):
                head, rest = r.split(".layers.")
                i, tail = rest.split(".", 1)
                i = int(i)
                # depth 3: layers.0 -> proj_in, layers.1 -> layers.0, layers.2 -> proj_out
                seg = "proj_in" if i == 0 else ("proj_out" if i == 2 else f"layers.{i - 1}")
                r = f"{head}.{seg}.{tail}"
            else:
                r = (r.replace("output_upscaling.0.", "upscale_conv1.")
                     .replace("output_upscaling.1.", "upscale_layer_norm.")
                     .replace("output_upscaling.3.", "upscale_conv2."))
            out["mask_decoder." + r] = v
    return out


def sam_hf(args):
    from safetensors.torch import load_file
    from transformers import SamConfig, SamImageProcessor, SamModel

    model = SamModel(SamConfig()).eval()
    sd = meta_to_hf(load_file(os.path.join(args.work, SAM_FILE)))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise SystemExit(f"Meta -> transformers SAM: missing {missing}, unexpected {unexpected}")
    official = load_official(args)
    x = official_input(official, image())
    del official
    proc = SamImageProcessor()
    with torch.inference_mode():
        enc = timeit(lambda: model.get_image_embeddings(x), args.repeats)
        emb = model.get_image_embeddings(x)
        # Point in the 1024-long-side frame, as SamProcessor would rescale it.
        pts = torch.tensor([[[list(POINT)]]])
        lbl = torch.tensor([[[1]]])

        def decode():
            o = model(image_embeddings=emb, input_points=pts, input_labels=lbl,
                      multimask_output=True)
            return proc.post_process_masks(o.pred_masks, [[768, 1024]], [[768, 1024]])

        dec = timeit(decode, max(10, args.repeats))
    save(args, "sam_hf", {"encoder": enc, "decoder": dec,
                          "attn_implementation": getattr(model.config, "_attn_implementation", None)})


def sam_onnx(args):
    import onnxruntime as ort
    from segment_anything.utils.onnx import SamOnnxModel

    sam = load_official(args)
    x = official_input(sam, image())
    enc_path = os.path.join(args.work, "sam_vit_b_encoder.onnx")
    dec_path = os.path.join(args.work, "sam_vit_b_decoder.onnx")
    t0 = time.perf_counter()
    if not os.path.exists(enc_path):
        with torch.no_grad():
            torch.onnx.export(sam.image_encoder, (x,), enc_path, input_names=["image"],
                              output_names=["embeddings"], opset_version=17, dynamo=False)
    if not os.path.exists(dec_path):
        onnx_model = SamOnnxModel(sam, return_single_mask=False)
        emb_size = sam.prompt_encoder.image_embedding_size
        dummy = {
            "image_embeddings": torch.randn(1, 256, *emb_size),
            "point_coords": torch.randint(0, 1024, (1, 5, 2), dtype=torch.float),
            "point_labels": torch.randint(0, 4, (1, 5), dtype=torch.float),
            "mask_input": torch.randn(1, 1, 256, 256),
            "has_mask_input": torch.tensor([1], dtype=torch.float),
            "orig_im_size": torch.tensor([1500, 2250], dtype=torch.float),
        }
        with torch.no_grad():  # as segment-anything's scripts/export_onnx_model.py
            torch.onnx.export(onnx_model, tuple(dummy.values()), dec_path,
                              input_names=list(dummy.keys()),
                              output_names=["masks", "iou_predictions", "low_res_masks"],
                              dynamic_axes={"point_coords": {1: "num_points"},
                                            "point_labels": {1: "num_points"}},
                              opset_version=17, do_constant_folding=True, dynamo=False)
    export_s = time.perf_counter() - t0
    if export_s > 1.0:
        # Time ORT in a fresh process: right after exporting in this one, ORT's encoder took
        # 8.1-8.2 s against 6.5-6.8 s in a process that found the files (2 Zen 4 cores,
        # 2026-11-23), which flattered segany's ratio.
        env = dict(os.environ, SEGANY_ONNX_EXPORT_S=str(export_s))
        subprocess.run([sys.executable, *sys.argv], env=env, check=True)
        return
    export_s = float(os.environ.get("SEGANY_ONNX_EXPORT_S", export_s))
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    enc_sess = ort.InferenceSession(enc_path, so, providers=["CPUExecutionProvider"])
    xn = x.numpy()
    # Three warm-up runs: the first timed run after one warm-up took 11-13 s against a steady
    # 3.7-4.4 s on a Zen 5 EPYC (2026-11-23), which made ORT's median of two runs 7.7 s.
    enc = timeit(lambda: enc_sess.run(None, {"image": xn}), args.repeats, warmup=3)
    emb = enc_sess.run(None, {"image": xn})[0]
    dec_sess = ort.InferenceSession(dec_path, so, providers=["CPUExecutionProvider"])
    # As the official notebook: the point plus a padding point (label -1), no mask input.
    feed = {
        "image_embeddings": emb,
        "point_coords": np.array([[list(POINT), [0.0, 0.0]]], dtype=np.float32),
        "point_labels": np.array([[1, -1]], dtype=np.float32),
        "mask_input": np.zeros((1, 1, 256, 256), dtype=np.float32),
        "has_mask_input": np.zeros(1, dtype=np.float32),
        "orig_im_size": np.array([768, 1024], dtype=np.float32),
    }
    dec = timeit(lambda: dec_sess.run(None, feed), max(10, args.repeats))
    save(args, "sam_onnx", {"encoder": enc, "decoder": dec, "export_s": export_s,
                            "timed_in_fresh_process": True, "onnxruntime": ort.__version__})


# ---------------------------------------------------------------------------------------------
# automatic mask generation


def amg(args):
    """The official generator, 32x32 grid on the 1024x1024 image, encoder excluded: the image is
    encoded once, then set_image/reset_image become no-ops. One timed run per setting
    (``--amg-configs``): ``keep_all`` (thresholds off: every mask through stability, boxes,
    RLE and NMS), ``default`` (official thresholds; random weights keep no mask) and/or
    ``upscale_all`` (no IoU filter, a stability threshold above 1: every mask upscaled and
    scored, none kept)."""
    from segment_anything import SamAutomaticMaskGenerator

    sam = load_official(args)
    img = image(1024, 1024)
    out = {}
    for name in args.amg_configs.split(","):
        kw = {"default": {}, "keep_all": dict(pred_iou_thresh=0.0, stability_score_thresh=0.0),
              "upscale_all": dict(pred_iou_thresh=0.0, stability_score_thresh=1.5)}[name]
        gen = SamAutomaticMaskGenerator(sam, points_per_side=32, **kw)
        with torch.inference_mode():
            gen.predictor.set_image(img)
        gen.predictor.set_image = lambda *a, **k: None
        gen.predictor.reset_image = lambda: None
        with torch.inference_mode():
            t = time.perf_counter()
            masks = gen.generate(img)
            dt = time.perf_counter() - t
        out[name] = {"median_s": dt, "runs_s": [dt], "kept": len(masks), "decoded": 32 * 32 * 3}
    save(args, "amg_official", out)


# ---------------------------------------------------------------------------------------------
# CLIP ViT-L/14@336


def clip(args):
    import open_clip
    from safetensors.torch import load_file
    from transformers import CLIPModel

    clip_dir = os.path.join(args.work, CLIP_DIR)
    px = torch.randn(1, 3, 336, 336, generator=torch.Generator().manual_seed(3))
    ids = torch.tensor([CLIP_IDS + [0] * (77 - len(CLIP_IDS))])
    res = {}
    hf = CLIPModel.from_pretrained(clip_dir).eval()
    with torch.inference_mode():
        res["transformers_image"] = timeit(lambda: hf.get_image_features(pixel_values=px),
                                           args.repeats)
        res["transformers_text"] = timeit(lambda: hf.get_text_features(input_ids=ids),
                                          max(5, args.repeats))
        # The same 8 ids without padding (transformers' tokenizer does not pad by default).
        short = ids[:, :len(CLIP_IDS)]
        res["transformers_text_unpadded"] = timeit(lambda: hf.get_text_features(input_ids=short),
                                                   max(5, args.repeats))
        # bf16 matmuls on the CPU (oneDNN's AVX-512 BF16 kernels), beside segany's opt-in
        # bf16 products.
        with torch.autocast("cpu", dtype=torch.bfloat16):
            res["transformers_image_bf16"] = timeit(
                lambda: hf.get_image_features(pixel_values=px), args.repeats)
            res["transformers_text_bf16"] = timeit(lambda: hf.get_text_features(input_ids=ids),
                                                   max(5, args.repeats))
    # What the products cost, for the report's floors at the machine's FMA peak: the image
    # tower, the 8 ids unpadded (segany's work for one text) and all 77 positions.
    res["flop"] = {
        "image": flop_count(hf, lambda: hf.get_image_features(pixel_values=px)),
        "text_8_ids": flop_count(
            hf, lambda: hf.get_text_features(input_ids=ids[:, :len(CLIP_IDS)])),
        "text_77_ids": flop_count(hf, lambda: hf.get_text_features(input_ids=ids))}
    del hf
    oc = open_clip.create_model("ViT-L-14-336-quickgelu", pretrained=None).eval()
    oc.load_state_dict(load_file(os.path.join(clip_dir, "open_clip_random.safetensors.src")))
    with torch.inference_mode():
        res["open_clip_image"] = timeit(lambda: oc.encode_image(px), args.repeats)
        res["open_clip_text"] = timeit(lambda: oc.encode_text(ids), max(5, args.repeats))
    save(args, "clip_l14_336", res)


# ---------------------------------------------------------------------------------------------
# SSP-SAM head (benches/compare/ssp_head_ref.py, checked against the official outputs first)


def ssp(args):
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import ssp_head_ref as ref

    golden = os.environ.get("GOLDEN_DIR") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "golden")
    res = {"golden_dir": os.path.abspath(golden)}
    for name, file in ref.GOLDEN.items():
        path = os.path.join(golden, file)
        if not os.path.exists(path):
            print(f"ssp: {path} not found (set GOLDEN_DIR); the {name} head is not timed")
            continue
        head, inputs, (prompts, boxes) = ref.from_golden(path)
        with torch.inference_mode():
            p, b = head(*inputs)
            parity = {"prompts_max_abs": float((p - prompts).abs().max()),
                      "boxes_max_abs": float((b - boxes).abs().max())}
            # A re-statement that drifted from the official forward is no reference.
            if parity["prompts_max_abs"] > 1e-4 or parity["boxes_max_abs"] > 1e-4:
                raise SystemExit(f"ssp: the PyTorch head misses the golden outputs: {parity}")
            res[name] = {**timeit(lambda: head(*inputs), max(10, args.repeats)), **parity}
            # bf16 matmuls (oneDNN's AVX-512 BF16 kernels), beside segany's opt-in bf16
            # products; its distance to the official outputs is recorded beside the time.
            with torch.autocast("cpu", dtype=torch.bfloat16):
                p, b = head(*inputs)
                res[name + "_bf16"] = {
                    **timeit(lambda: head(*inputs), max(10, args.repeats)),
                    "prompts_max_abs": float((p.float() - prompts).abs().max()),
                    "boxes_max_abs": float((b.float() - boxes).abs().max())}
        # The reference's product count (report.py checks its own formula against it).
        res[name]["flop"] = flop_count(head, lambda: head(*inputs))
    save(args, "ssp_head", res)


# ---------------------------------------------------------------------------------------------
# peak resident memory (benches/compare/mem.sh)


def proc_status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    return out


def mem(args):
    """Official segment-anything as its users load a safetensors file: build the model, then
    load_state_dict(load_file(path)); then encode one 1024x1024 image. VmHWM is reset after
    loading (Linux clear_refs 5) so the encode stage's peak is its own."""
    from safetensors.torch import load_file
    from segment_anything import sam_model_registry

    size = os.path.getsize(args.model)
    stages = [{"stage": "start", "mem": proc_status()}]
    t = time.perf_counter()
    sam = sam_model_registry[args.variant]().eval()
    sam.load_state_dict(load_file(args.model))
    import gc
    gc.collect()
    stages.append({"stage": "load", "seconds": time.perf_counter() - t, "mem": proc_status()})
    load_peak = stages[-1]["mem"]["VmHWM"]
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    x = official_input(sam, image(1024, 1024))
    t = time.perf_counter()
    with torch.inference_mode():
        emb = sam.image_encoder(x)
    stages.append({"stage": "encode", "seconds": time.perf_counter() - t,
                   "embedding": list(emb.shape), "mem": proc_status()})
    enc_peak = stages[-1]["mem"]["VmHWM"]
    peak = max(load_peak, enc_peak)
    save(args, "mem_torch", {"model": args.model, "file_size": size, "peak_rss": peak,
                             "load_peak_rss": load_peak, "encode_peak_rss": enc_peak,
                             "peak_over_file": peak / size, "stages": stages})


# ---------------------------------------------------------------------------------------------
# pycocotools on the masks of benches/rle.rs


def rle(args):
    from pycocotools import mask as mu

    def texture(h, w):
        x, y = np.meshgrid(np.arange(w) / w, np.arange(h) / h)
        s = np.sin(x * 37.0) + np.sin(y * 29.0) + np.sin(x * 11.0 + y * 13.0)
        return (s > 0.9).astype(np.uint8)

    def obj(h, w):
        x, y = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        cy, cx, ry, rx = h * 0.5, w * 0.45, h * 0.35, w * 0.3
        inside = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0
        notch = (x > cx) & (np.abs(y - cy) < ry * 0.15)
        return (inside & ~notch).astype(np.uint8)

    res = {}
    for name, make in [("object", obj), ("texture", texture)]:
        for h, w in [(1024, 1024), (480, 640)]:
            m = np.asfortranarray(make(h, w))
            r = mu.encode(m)
            key = f"{name}_{h}x{w}"
            res[f"encode/{key}"] = timeit(lambda: mu.encode(m), 20)
            res[f"decode/{key}"] = timeit(lambda: mu.decode(r), 20)
            res[f"area/{key}"] = timeit(lambda: mu.area(r), 200)
    save(args, "pycocotools_rle", res)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["prepare", "sgemm", "sam_official", "sam_hf", "sam_onnx",
                                     "mobilesam", "amg", "clip", "ssp", "rle", "mem"])
    ap.add_argument("--model", help="mem: a Meta-layout SAM safetensors file")
    ap.add_argument("--amg-configs", default="keep_all",
                    help="amg: keep_all, default and/or upscale_all")
    ap.add_argument("--variant", default="vit_h", help="mem: vit_b, vit_l or vit_h")
    ap.add_argument("--work", required=True, help="directory for weights and ONNX files")
    ap.add_argument("--out", required=True, help="directory for the JSON results")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    print(f"[{args.what}] python {platform.python_version()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    globals()[args.what](args)


if __name__ == "__main__":
    main()
