"""A PyTorch SSP-SAM head for timing: the official `models/ssp_sam_336.py` / `ssp_sam_224.py`
forward after the CLIP encoders and before SAM (spatial prior, linguistic adapter with its
bidirectional GRU and phrase attention, visual adapter with image-to-text attention and Gaussian
verification, tanh fusion, the 6-layer post-norm DETR encoder with learned positions, final norm,
box head), built from stock `torch.nn` modules under the checkpoint's own key names.

The official code is not on PyPI, so this module is a re-statement of it (notes:
`ssp_sam.md` §1.3). It is only used as a timing reference after `check()` has shown that it
reproduces the golden outputs of the official forward (`outputs.prompts`, `outputs.pred_boxes`
in `ssp_sam_{224,336}_seed*.safetensors`) on the golden weights and inputs.

    python benches/compare/ssp_head_ref.py [GOLDEN_DIR]   # parity with the golden files
"""
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class Mlp(nn.Module):
    """DETR's MLP: `layers.N` Linear, ReLU between them."""

    def __init__(self, i, h, o, n):
        super().__init__()
        dims = [i] + [h] * (n - 1)
        outs = [h] * (n - 1) + [o]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, outs))

    def forward(self, x):
        for k, layer in enumerate(self.layers):
            x = layer(x)
            if k + 1 < len(self.layers):
                x = F.relu(x)
        return x


class EncoderLayer(nn.Module):
    """DETR `TransformerEncoderLayer.forward_post`, dropout 0, ReLU."""

    def __init__(self, d=256, heads=8, ffn=2048):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads)
        self.linear1 = nn.Linear(d, ffn)
        self.linear2 = nn.Linear(ffn, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)

    def forward(self, src, pos):
        q = k = src + pos
        src = self.norm1(src + self.self_attn(q, k, value=src)[0])
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class Encoder(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer() for _ in range(layers))


class VlTransformer(nn.Module):
    def __init__(self, layers=6):
        super().__init__()
        self.encoder = Encoder(layers)


class PhraseAttention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc = nn.Linear(dim, 1)


class SspHead(nn.Module):
    """Everything of SSP-SAM between the CLIP encoders and SAM, official key names."""

    def __init__(self, clip_dim=768, grid=24, adapter=512, d=256, prompts=128, layers=6):
        super().__init__()
        self.grid = grid
        self.prompts = prompts
        self.clip_proj = nn.Linear(clip_dim, adapter)
        self.text_proj = nn.GRU(adapter, adapter, 1, batch_first=True, bidirectional=True)
        self.phrase_attn = PhraseAttention(2 * adapter)
        self.clip_img_proj = Mlp(clip_dim, adapter, adapter, 3)
        self.img2text_attn = nn.MultiheadAttention(adapter, 8)
        self.imgtext_proj = Mlp(adapter, adapter, adapter, 1)
        self.img_proj = Mlp(adapter, adapter, adapter, 1)
        self.tf_scale = nn.Parameter(torch.ones(1))
        self.tf_sigma = nn.Parameter(torch.full((1,), 0.5))
        self.norm_img = nn.LayerNorm(adapter)
        self.mlp = nn.Linear(adapter, d)
        self.reg_token = nn.Embedding(1, d)
        self.prompt_token = nn.Embedding(prompts, d)
        self.vl_pos_embed = nn.Embedding(1 + prompts + grid * grid, d)
        self.vl_transformer = VlTransformer(layers)
        self.norm = nn.LayerNorm(d)
        self.bbox_embed = Mlp(d, d, 4, 3)

    def forward(self, img, txt, words, ids):
        b = img.shape[0]
        p = self.grid
        img = img / img.norm(dim=1, keepdim=True)  # over the token axis, as trained
        txt = txt / txt.norm(dim=-1, keepdim=True)
        sim = (img @ txt.unsqueeze(-1))[:, 1:, :]
        lo = sim.min(1, keepdim=True)[0]
        hi = sim.max(1, keepdim=True)[0]
        sim_map = ((sim - lo) / (hi - lo)).reshape(b, p, p, 1)
        # Linguistic adapter.
        e = self.clip_proj(words)
        y, _ = self.text_proj(e)
        pad = ids == 0
        a = F.softmax(self.phrase_attn.fc(y).squeeze(-1), dim=-1)
        a = a * (~pad).float()
        a = a / a.sum(1, keepdim=True)
        w = torch.bmm(a.unsqueeze(1), e)  # (B, 1, 512)
        # Visual adapter.
        q = self.clip_img_proj(img[:, 1:].reshape(b, p, p, -1) * sim_map).reshape(b, p * p, -1)
        t = self.img2text_attn(q.transpose(0, 1), e.transpose(0, 1), e.transpose(0, 1),
                               key_padding_mask=pad)[0].transpose(0, 1)
        s = F.cosine_similarity(self.img_proj(q), self.imgtext_proj(t), dim=-1).unsqueeze(-1)
        v = self.tf_scale * torch.exp(-(1 - s) ** 2 / (2 * self.tf_sigma ** 2))
        fv = self.norm_img(q) * v
        # Fusion and the prompt transformer.
        x = torch.tanh(fv.transpose(1, 2)) * torch.tanh(w.transpose(1, 2))  # (B, 512, P²)
        x = self.mlp(x.permute(2, 0, 1))  # (P², B, 256)
        src = torch.cat([self.reg_token.weight.unsqueeze(1).expand(-1, b, -1),
                         self.prompt_token.weight.unsqueeze(1).expand(-1, b, -1), x])
        pos = self.vl_pos_embed.weight.unsqueeze(1)
        for layer in self.vl_transformer.encoder.layers:
            src = layer(src, pos)
        hs = self.norm(src)
        boxes = torch.sigmoid(self.bbox_embed(hs[0]))
        return hs[1:1 + self.prompts].transpose(0, 1), boxes


def variant(clip_dim):
    """(clip_dim, grid) of the 224 (ViT-B/16) and 336 (ViT-L/14) heads."""
    return {512: (512, 14), 768: (768, 24)}[clip_dim]


def from_golden(path):
    """The head on a golden file's weights (f16 values as f32) and its inputs and outputs."""
    from safetensors.torch import load_file
    t = load_file(str(path))
    sd = {k[len("weights."):]: v.float() for k, v in t.items() if k.startswith("weights.")}
    clip_dim, grid = variant(sd["clip_proj.weight"].shape[1])
    head = SspHead(clip_dim, grid)
    ours = set(head.state_dict())
    unused = [k for k in sd if k not in ours]
    # The SAM parts and the two stored-but-unused modules are not part of the head.
    assert all(k.startswith(("sam.", "img2img_attn.", "norm_text_cond_img.")) for k in unused), unused
    head.load_state_dict({k: v for k, v in sd.items() if k in ours}, strict=True)
    head.eval()
    inputs = [t["inputs.clip_image_features"].float(), t["inputs.clip_text_embedding"].float(),
              t["inputs.clip_word_features"].float(), t["inputs.token_ids"].long()]
    outputs = [t["outputs.prompts"].float(), t["outputs.pred_boxes"].float().reshape(-1, 4)]
    return head, inputs, outputs


GOLDEN = {"224": "ssp_sam_224_seed1.safetensors", "336": "ssp_sam_336_seed2.safetensors"}


def check(golden_dir):
    """Max |difference| of (prompts, boxes) against the official outputs, per variant."""
    out = {}
    with torch.no_grad():
        for name, file in GOLDEN.items():
            head, inputs, (prompts, boxes) = from_golden(Path(golden_dir) / file)
            p, bx = head(*inputs)
            out[name] = {"prompts_max_abs": float((p - prompts).abs().max()),
                         "boxes_max_abs": float((bx - boxes).abs().max())}
    return out


if __name__ == "__main__":
    print(check(sys.argv[1] if len(sys.argv) > 1 else "../shared/golden"))
