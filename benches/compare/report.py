#!/usr/bin/env python3
"""Collects one benches/compare/run.sh run into OUT/results.json and OUT/table.md.

Reads the reference timings (OUT/raw/*.json, from refs.py) and criterion's estimates
(TARGET/criterion/<group>/<function>/new/estimates.json, mean), refusing estimates older than
the run's start (``--since``, a Unix time) so that a bench that failed is not replaced by an
old number. Ratios are segany / the fastest reference in the same run.

Usage: python report.py --out OUT --target TARGET --since UNIX_TIME [--machine OUT/machine.json]
"""
import argparse
import json
import os

# ViT-B encoder multiply-adds at 1024² (SAM's layout: windowed blocks run qkv/proj on the 70x70
# padded grid, 25 windows of 196 tokens; global blocks on 4096 tokens; MLP on 4096 tokens).
D, N, NP, W = 768, 4096, 4900, 196
_MAC = (8 * (NP * 4 * D * D + NP * 2 * W * D + N * 8 * D * D)
        + 4 * (N * 4 * D * D + 2 * N * N * D + N * 8 * D * D)
        + N * 768 * D + N * D * 256 + N * 256 * 256 * 9)
VIT_B_FLOP = 2 * _MAC
# What segany's ViT-B encoder multiplies: every linear layer on the 4,096 tokens (windowed
# blocks too: the padded tokens' projection is the bias), global attention with its
# decomposed relative positions, windowed attention for the real queries only against each
# window's 196 keys, patch embedding and neck.
_C, _HEADS, _G, _WS = 64, 12, 64, 14
_SEGANY_MAC = (12 * N * 12 * D * D
               + 4 * (2 * N * N * D + _HEADS * N * 2 * _G * _C)
               + 8 * (2 * N * W * D + _HEADS * N * 2 * _WS * _C)
               + N * 768 * D + N * D * 256 + N * 256 * 256 * 9)
VIT_B_SEGANY_FLOP = 2 * _SEGANY_MAC

# benches/amg.rs settings the report reads (run.sh's AMG_CONFIGS).
AMG_CONFIGS = ("default", "upscale_all", "keep_all")


def ssp_head_flop(clip_dim, grid, last_rows=None, a=512, d=256, ffn=2048, layers=6, prompts=128,
                  t=77):
    """The SSP-SAM head's products in FLOP (2 per multiply-add), for one expression: linguistic
    adapter (clip_proj, the bidirectional GRU's input and recurrent products, phrase attention),
    similarity map, visual adapter, fusion, the 6-layer prompt transformer over
    1 + 128 + grid² tokens, box head. With ``last_rows`` the last layer computes only that many
    output rows (segany reads the box token and the prompts only, 1 + 128); without, every row,
    as the official forward. The full count equals what torch's FlopCounterMode counts on
    ``ssp_head_ref.py`` (7.17 GFLOP for the 224 head, 17.28 for the 336; refs.py records it
    and the report checks it)."""
    p = grid * grid
    n = 1 + prompts + p
    mac = t * clip_dim * a + 2 * (2 * t * a * 3 * a) + t * 2 * a + t * a
    mac += (1 + p) * clip_dim
    mac += p * clip_dim * a + 2 * p * a * a
    mac += 2 * p * a * a + 2 * t * a * a + 2 * p * t * a
    mac += 2 * p * a * a + p * a * d
    for i in range(layers):
        r = last_rows if (last_rows and i + 1 == layers) else n
        mac += 2 * r * d * d + 2 * n * d * d + 2 * r * n * d + 2 * r * d * ffn
    mac += 2 * d * d + 4 * d
    return 2 * mac


def crit(target, since, group, name):
    p = os.path.join(target, "criterion", group, name, "new", "estimates.json")
    if not os.path.exists(p) or os.path.getmtime(p) < since:
        return None
    with open(p) as f:
        return json.load(f)["mean"]["point_estimate"] / 1e9


def crit_fastest(target, since, group, name):
    """The fastest sample's time per iteration (criterion's sample.json), for a peak."""
    p = os.path.join(target, "criterion", group, name, "new", "sample.json")
    if not os.path.exists(p) or os.path.getmtime(p) < since:
        return None
    with open(p) as f:
        s = json.load(f)
    return min(t / n for t, n in zip(s["times"], s["iters"])) / 1e9


def raw(out, name):
    p = os.path.join(out, "raw", f"{name}.json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def med(d, *keys):
    for k in keys:
        if d is None:
            return None
        d = d.get(k)
    return d.get("median_s") if isinstance(d, dict) else None


def fmt(s):
    if s is None:
        return "—"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.1f} µs"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--since", type=float, required=True)
    a = ap.parse_args()
    c = lambda g, n: crit(a.target, a.since, g, n)  # noqa: E731
    machine = {}
    mp = os.path.join(a.out, "machine.json")
    if os.path.exists(mp):
        with open(mp) as f:
            machine = json.load(f)

    off, hf, onnx = raw(a.out, "sam_official"), raw(a.out, "sam_hf"), raw(a.out, "sam_onnx")
    amg, clip, tg = raw(a.out, "amg_official"), raw(a.out, "clip_l14_336"), raw(a.out, "torch_sgemm")
    enc = c("sam_vit_b", "segany_encoder_1024")
    amg_s = raw(a.out, "amg_segany") or {}
    tiny = amg_s.get("tiny_encoder_s")
    amg_rs = {k: (amg_s.get(k) or {}).get("total_s") for k in AMG_CONFIGS}
    amg_ex = {k: (amg_s.get(k) or {}).get("encoder_excluded_s") for k in AMG_CONFIGS}
    kept = {k: (amg_s.get(k) or {}).get("kept") for k in AMG_CONFIGS}
    torch_enc = med(off, "encoder")

    # benches/compare/sgemm.rs: FMA_FLOP_PER_THREAD per thread and call.
    fma = crit_fastest(a.target, a.since, "peak", "fma_f32")
    fma_peak = (machine.get("threads") or 0) * 3840e6 / fma / 1e9 if fma else None
    floors = {}

    def floor(key, flop, ref_s, target_ratio, counted):
        """The least time `flop` of products take at the FMA peak, and the share of that peak
        the target's time (`target_ratio` × `ref_s`) needs: a target beyond 100% cannot be met
        in f32 on this machine, however little else runs."""
        if not (flop and fma_peak):
            return ""
        at_peak = flop / (fma_peak * 1e9)
        floors[key] = {"flop": flop, "at_fma_peak_s": at_peak, "counted": counted}
        text = f"{flop / 1e9:.1f} GFLOP of products ({counted}): ≥ {fmt(at_peak)} at the FMA peak"
        if ref_s:
            need = at_peak / (target_ratio * ref_s)
            floors[key]["target_needs_fraction_of_fma_peak"] = need
            text += (f"; {target_ratio}× the fastest reference ({fmt(target_ratio * ref_s)}) "
                     f"needs {need * 100:.0f}% of that peak")
        return text

    rows = []

    def row(what, segany, refs, target=None, note=""):
        present = {k: v for k, v in refs.items() if v is not None}
        fastest = min(present, key=present.get) if present else None
        ratio = segany / present[fastest] if segany is not None and fastest else None
        rows.append({"what": what, "segany_s": segany, "refs_s": refs, "fastest_ref": fastest,
                     "ratio": ratio, "target": target, "note": note})

    refs_f32 = [t for t in (torch_enc, med(hf, "encoder"), med(onnx, "encoder")) if t]
    fastest_f32 = min(refs_f32) if refs_f32 else None
    official_flop = (off or {}).get("encoder_flop")
    row("SAM ViT-B image encoder, 1024²", enc,
        {"candle-transformers": c("sam_vit_b", "candle_transformers_encoder_1024"),
         "segment-anything": torch_enc, "transformers": med(hf, "encoder"),
         "ONNX Runtime": med(onnx, "encoder")}, "≤ 0.65× fastest of ORT / transformers / official",
        floor("vit_b_encoder", VIT_B_SEGANY_FLOP, fastest_f32, 0.65,
              "report.py's count of segany's encoder"
              + (f"; FlopCounterMode counts {official_flop / 1e12:.3f} TFLOP in the official "
                 "encoder, whose windowed blocks run on the padded 70×70 grid"
                 if official_flop else "")))
    tiny_vit = c("sam_vit_t", "segany_tiny_vit_encoder_1024")
    row("MobileSAM TinyViT-5M image encoder, 1024² (beside ViT-B's)", tiny_vit,
        {"PyTorch": med(raw(a.out, "mobilesam_official"), "encoder")},
        "(reported beside ViT-B: no target)",
        "PyTorch: MobileSAM's reference code (`mobilesam-mirror`, `sam_model_registry['vit_t']`) "
        "on the same random weights"
        + (f"; {tiny_vit / enc:.2f}× segany's ViT-B encoder" if tiny_vit and enc else ""))
    enc_bf16 = c("sam_vit_b", "segany_encoder_1024_bf16")
    row("SAM ViT-B image encoder, 1024², bf16 products (opt-in `CpuMatmul::Bf16`; "
        "segment-anything under torch.autocast bf16)", enc_bf16,
        {"segment-anything": med(off, "encoder_bf16")},
        "(not a target: reported beside the f32 rows)",
        "inputs and weights of qkv, proj, lin1, lin2 rounded to bf16, sums in f32 (AVX-512 BF16); "
        + (f"{enc_bf16 / fastest_f32:.2f}× the fastest f32 reference; " if enc_bf16 and fastest_f32
           else "") + "the embedding's distance to f32 printed by the bench")
    row("one point → 3 masks at 1024×768 (prompt enc. + decoder + post-processing)",
        c("sam_vit_b", "segany_decoder_one_point"),
        {"candle-transformers": c("sam_vit_b", "candle_transformers_decoder_one_point"),
         "segment-anything": med(off, "decoder"), "transformers": med(hf, "decoder"),
         "ONNX Runtime": med(onnx, "decoder")}, "≤ 30 ms and ≤ 0.3× official",
        "candle-transformers: low-res masks only (no upscaling to the image); ONNX: "
        "SamOnnxModel, 4 masks")
    for k, label in [("default", "official thresholds"),
                     ("upscale_all", "every mask upscaled and scored, none kept (as real weights "
                      "cause)"),
                     ("keep_all", "thresholds off")]:
        if amg_ex[k] is None and med(amg, k) is None:
            continue
        row(f"AMG 32×32 on 1024², {label}, encoder excluded", amg_ex[k],
            {"segment-anything": med(amg, k)}, "AMG total ≤ 2× one encoder pass",
            f"masks kept of 3072: segany {kept[k]}, official {(amg or {}).get(k, {}).get('kept')}")
        tot = amg_ex[k] + enc if amg_ex[k] is not None and enc else None
        ref_tot = med(amg, k) + torch_enc if med(amg, k) and torch_enc else None
        row(f"AMG 32×32 on 1024², {label}, encoder included", tot,
            {"segment-anything": ref_tot}, "≤ 2× one encoder pass",
            "encoder-excluded time + the same implementation's encoder time")
    row("CLIP ViT-L/14@336 image embedding", c("clip_vit_l14_336", "image_embedding"),
        {"transformers": med(clip, "transformers_image"), "open_clip": med(clip, "open_clip_image")},
        "≤ 0.5× PyTorch")
    # The issue's measure: one image and one text. transformers' tokenizer does not pad a
    # single text (its unpadded time), open_clip's always pads to 77.
    add = lambda x, y: x + y if x and y else None  # noqa: E731
    clip_refs = [t for t in (add(med(clip, "transformers_image"),
                                 med(clip, "transformers_text_unpadded")),
                             add(med(clip, "open_clip_image"), med(clip, "open_clip_text"))) if t]
    clip_flop = (clip or {}).get("flop") or {}
    clip_floor = floor("clip_image_text", add(clip_flop.get("image"), clip_flop.get("text_8_ids")),
                       min(clip_refs) if clip_refs else None, 0.5,
                       "counted by torch's FlopCounterMode in transformers' image tower and its "
                       "text tower on the 8 ids")
    row("CLIP ViT-L/14@336 image + one text (8 ids)",
        add(c("clip_vit_l14_336", "image_embedding"), c("clip_vit_l14_336", "text_one")),
        {"transformers": add(med(clip, "transformers_image"),
                             med(clip, "transformers_text_unpadded")),
         "open_clip": add(med(clip, "open_clip_image"), med(clip, "open_clip_text"))},
        "≤ 0.5× PyTorch",
        "the sum of the image row and the one-text row below; transformers given the 8 ids "
        "unpadded (its tokenizer's default for one text), open_clip padded to 77 (open_clip's "
        "tokenizer always pads)"
        + ("; " + clip_floor if clip_floor else ""))
    row("CLIP ViT-L/14@336 one text, 8 ids padded to 77 (segany stops at end-of-text)",
        c("clip_vit_l14_336", "text_one"),
        {"transformers": med(clip, "transformers_text"), "open_clip": med(clip, "open_clip_text")},
        "≤ 0.5× PyTorch")
    row("CLIP ViT-L/14@336 one text, 8 ids unpadded",
        c("clip_vit_l14_336", "text_one"),
        {"transformers": med(clip, "transformers_text_unpadded")}, "≤ 0.5× PyTorch",
        "the same embedding as the padded row; transformers given only the 8 ids")
    text77_refs = [t for t in (med(clip, "transformers_text"), med(clip, "open_clip_text")) if t]
    row("CLIP ViT-L/14@336 one text, all 77 positions (token features, as SSP-SAM reads them)",
        c("clip_vit_l14_336", "text_one_all_tokens"),
        {"transformers": med(clip, "transformers_text"), "open_clip": med(clip, "open_clip_text")},
        "≤ 0.5× PyTorch",
        floor("clip_text_77", clip_flop.get("text_77_ids"),
              min(text77_refs) if text77_refs else None, 0.5,
              "counted by torch's FlopCounterMode in transformers' text tower on 77 ids"))
    for what, name, ref, f32_ref in [
            ("image embedding", "image_embedding_bf16", "transformers_image_bf16",
             "transformers_image"),
            ("one text, all 77 positions", "text_one_all_tokens_bf16", "transformers_text_bf16",
             "transformers_text")]:
        ours = c("clip_vit_l14_336", name)
        f32_ref_s = med(clip, f32_ref)
        row(f"CLIP ViT-L/14@336 {what}, bf16 products (opt-in `CpuMatmul::Bf16`; transformers "
            "under torch.autocast bf16)", ours, {"transformers": med(clip, ref)},
            "(not a target: reported beside the f32 rows)",
            "inputs and weights of every linear layer rounded to bf16, sums in f32 (AVX-512 BF16); "
            + (f"{ours / f32_ref_s:.2f}× transformers in f32" if ours and f32_ref_s else "")
            + "; cosine to the f32 result printed by the bench")
    ssp = raw(a.out, "ssp_head") or {}
    for v, clip_name in [("336", "CLIP ViT-L/14@336"), ("224", "CLIP ViT-B/16")]:
        par = ssp.get(v) or {}
        note = ("PyTorch: the official forward re-stated on stock torch.nn "
                "(benches/compare/ssp_head_ref.py), timed after reproducing the official outputs "
                f"of the golden file (max |Δ| prompts {par['prompts_max_abs']:.1e}, boxes "
                f"{par['boxes_max_abs']:.1e}); both on that file's weights and inputs"
                if par else "no PyTorch time (golden file missing: GOLDEN_DIR)")
        clip_dim, grid = {"336": (768, 24), "224": (512, 14)}[v]
        full = ssp_head_flop(clip_dim, grid)
        counted = par.get("flop")
        check = ("equal to FlopCounterMode's count on the PyTorch head" if counted == full else
                 f"FlopCounterMode counts {counted / 1e9:.2f} GFLOP on the PyTorch head, the "
                 f"formula {full / 1e9:.2f}" if counted else "FlopCounterMode count missing")
        ssp_floor = floor(f"ssp_head_{v}", ssp_head_flop(clip_dim, grid, 1 + 128), med(ssp, v),
                          0.5, f"report.py's count, whose full-forward value {full / 1e9:.2f} "
                          f"GFLOP is {check}, less the last layer's unread patch rows")
        note += "; " + ssp_floor if ssp_floor else ""
        row(f"SSP-SAM head, {v} variant ({clip_name} features; adapters + fusion + prompt "
            "transformer + box head)", c("ssp_head", v), {"PyTorch": med(ssp, v)},
            "≤ 0.5× PyTorch", note)
    for v in ["336", "224"]:
        ours, f32_ref_s = c("ssp_head", f"{v}_bf16"), med(ssp, v)
        par = ssp.get(f"{v}_bf16") or {}
        row(f"SSP-SAM head, {v} variant, bf16 products (opt-in `CpuMatmul::Bf16`; PyTorch under "
            "torch.autocast bf16)", ours, {"PyTorch": med(ssp, f"{v}_bf16")},
            "(not a target: reported beside the f32 rows)",
            "inputs and weights of every linear layer rounded to bf16, sums in f32 (AVX-512 BF16); "
            + (f"{ours / f32_ref_s:.2f}× PyTorch in f32; " if ours and f32_ref_s else "")
            + "segany's distance to its f32 outputs printed by the bench"
            + (f", PyTorch bf16's: prompts {par['prompts_max_abs']:.1e}, boxes "
               f"{par['boxes_max_abs']:.1e}" if par else ""))

    peak_torch = tg["gflops_best"] if tg else None
    sg = c("sgemm", "square_2048")
    peak_candle = 2 * 2048 ** 3 / sg / 1e9 if sg else None
    # segany's product into a reused buffer (candle's allocates its output on every call).
    sg_split = c("sgemm_split", "segany_2048x2048x2048")
    sgemm_segany = 2 * 2048 ** 3 / sg_split / 1e9 if sg_split else None
    peak = max([p for p in (peak_torch, peak_candle) if p] or [0]) or None
    enc_gflops = VIT_B_SEGANY_FLOP / enc / 1e9 if enc else None
    extra = {
        "fma_peak_gflops": fma_peak,
        "sgemm_2048_gflops": {"pytorch": peak_torch, "candle": peak_candle,
                              "segany_reused_buffer": sgemm_segany},
        "sgemm_shapes_gflops": {n: (f / t / 1e9 if t else None) for n, f, t in [
            ("vit_b_mlp_4096x768x3072", 2 * 4096 * 768 * 3072, c("sgemm", "vit_b_mlp_4096x768x3072")),
            ("vit_b_window_qk_300x196x64x196", 2 * 300 * 196 * 64 * 196,
             c("sgemm", "vit_b_window_qk_300x196x64x196"))]},
        "vit_b_encoder_flop": VIT_B_SEGANY_FLOP,
        "vit_b_encoder_flop_official_layout": VIT_B_FLOP,
        "floors": floors,
        "segany_encoder_gflops": enc_gflops,
        "segany_encoder_fraction_of_peak": enc_gflops / peak if enc_gflops and peak else None,
        "segany_encoder_fraction_of_fma_peak": (enc_gflops / fma_peak
                                                if enc_gflops and fma_peak else None),
        "amg": {"segany_s": amg_rs, "segany_tiny_encoder_s": tiny,
                "segany_encoder_excluded_s": amg_ex, "segany_kept": kept,
                "official": amg,
                "segany_excluded_over_encoder": (amg_ex["keep_all"] / enc
                                                 if amg_ex["keep_all"] and enc else None),
                "official_excluded_over_encoder": (med(amg, "keep_all") / torch_enc
                                                   if med(amg, "keep_all") and torch_enc else None)},
    }
    mem = raw(a.out, "mem_torch")
    mem_rs = os.path.join(a.out, "raw", "mem_segany.json")
    if os.path.exists(mem_rs):
        with open(mem_rs) as f:
            extra["memory"] = {"segany": json.load(f), "pytorch": mem}
    result = {"machine": machine, "rows": rows, **extra}
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)

    cols = ["candle-transformers", "segment-anything", "transformers", "ONNX Runtime", "open_clip",
            "PyTorch"]
    lines = [
        f"Machine: {machine.get('cpu', '?')}"
        + (f" (family/model {machine['cpu_family_model']})" if machine.get("cpu_family_model")
           else "")
        + f", {machine.get('cores', '?')} cores, "
        f"{machine.get('threads', '?')} threads for every implementation; "
        f"{machine.get('date', '?')}, segany {machine.get('git', '?')}; "
        f"load average {machine.get('load_start', '?')} → {machine.get('load_end', '?')}.",
        "",
        "| | segany | " + " | ".join(cols) + " | segany / fastest | target |",
        "|---|---|" + "---|" * len(cols) + "---|---|",
    ]
    for r in rows:
        cells = [fmt(r["refs_s"].get(k)) if k in r["refs_s"] else "" for k in cols]
        ratio = f"{r['ratio']:.2f} ({r['fastest_ref']})" if r["ratio"] else "—"
        lines.append(f"| {r['what']} | {fmt(r['segany_s'])} | " + " | ".join(cells)
                     + f" | {ratio} | {r['target'] or ''} |")
    lines.append("")
    for r in rows:
        if r["note"]:
            lines.append(f"* {r['what']}: {r['note']}.")
    f1 = lambda v: f"{v:.0f}" if v else "—"  # noqa: E731
    pct = lambda x, y: f" = {x / y * 100:.0f}% of the FMA peak" if x and y else ""  # noqa: E731
    lines.append(
        f"* f32 FMA peak of the {machine.get('threads', '?')} threads (twelve independent "
        f"chains per thread, fastest sample): {f1(fma_peak)} GFLOP/s. f32 sgemm 2048³: PyTorch {f1(peak_torch)} "
        f"GFLOP/s{pct(peak_torch, fma_peak)}, candle {f1(peak_candle)} GFLOP/s (a new output per "
        f"call), segany's `matmul_into` into a reused buffer {f1(sgemm_segany)} GFLOP/s"
        f"{pct(sgemm_segany, fma_peak)}; "
        f"segany's ViT-B encoder ({VIT_B_SEGANY_FLOP / 1e12:.2f} TFLOP of products; "
        f"{VIT_B_FLOP / 1e12:.2f} in the official layout) runs at {f1(enc_gflops)} GFLOP/s"
        + (f" = {extra['segany_encoder_fraction_of_peak'] * 100:.0f}% of the better sgemm"
           if extra["segany_encoder_fraction_of_peak"] else "")
        + f"{pct(enc_gflops, fma_peak)}.")
    am = extra["amg"]
    if am["segany_excluded_over_encoder"]:
        lines.append(
            f"* AMG (thresholds off) after the encoder / one encoder pass: segany "
            f"{am['segany_excluded_over_encoder']:.2f}, segment-anything "
            f"{am['official_excluded_over_encoder'] or float('nan'):.2f} "
            f"(segany's tiny stand-in encoder, {fmt(tiny)}, is subtracted).")
    if "memory" in extra:
        ms, mt = extra["memory"]["segany"], extra["memory"]["pytorch"]
        gib = lambda b: f"{b / 2**30:.2f} GiB" if b else "—"  # noqa: E731
        line = (f"* Peak RSS, ViT-H load + one 1024² encode ({gib(ms['file_size'])} file): segany "
                f"{gib(ms['peak_rss'])} = {ms['peak_over_file']:.2f}× (load {gib(ms['load_peak_rss'])},"
                f" encode {gib(ms.get('encode_peak_rss'))})")
        if mt:
            line += (f"; PyTorch {gib(mt['peak_rss'])} = {mt['peak_over_file']:.2f}× "
                     f"(load {gib(mt['load_peak_rss'])}, encode {gib(mt['encode_peak_rss'])})")
        lines.append(line + "; target ≤ 1.3×.")
    with open(os.path.join(a.out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
