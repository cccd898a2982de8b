"""Reference side of the feature exactness check of scripts/gpu_check.py (CPU or GPU).

  reference_features.py make --tree TREE/train --out DIR [--n 32] [--device cuda] [--fp16]
      DIR/images/*.png   256x256 centre crops of the first N images of the tree (sorted), so that
                         the evaluation transform (Resize 256, CenterCrop 224) only crops: both
                         sides see exactly the same pixels;
      DIR/vits14.pth     random weights of the released ViT-S/14 (the `dinov2` package's
                         vit_small: patch 14, img_size 518, LayerScale 1.0, as hubconf builds
                         dinov2_vits14), written with torch.save;
      DIR/reference_fp32.safetensors  `cls`, `patch` of those images through that model in
                         fp32 with TF32 off (torch.backends.cuda.matmul / cudnn .allow_tf32);
      DIR/reference_fp16.safetensors  the same under torch.autocast(float16) (with --fp16).
  reference_features.py compare OURS.safetensors REFERENCE.safetensors
      prints JSON: per tensor the max |diff|, the largest |value| of the reference, max and mean
      relative error (|diff| / max|ref| of the row), and the cosine similarity of the CLS rows.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch


def make(a):
    from PIL import Image
    from safetensors.torch import save_file
    from dinov2.models.vision_transformer import vit_small

    out = Path(a.out)
    imgs = out / "images"
    imgs.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in Path(a.tree).rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))[: a.n]
    if not files:
        sys.exit(f"no images under {a.tree}")
    for i, f in enumerate(files):
        im = Image.open(f).convert("RGB")
        w, h = im.size
        s = min(w, h, 256)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((256, 256), Image.BICUBIC)
        im.save(imgs / f"img{i:03d}.png")
    torch.manual_seed(0)
    model = vit_small(patch_size=14, img_size=518, init_values=1.0, block_chunks=0)
    torch.save(model.state_dict(), out / "vits14.pth")
    dev = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = model.to(dev).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    paths = sorted(imgs.glob("*.png"))
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB"))[16:240, 16:240].copy())
                     for p in paths]).permute(0, 3, 1, 2).float().div(255)
    x = ((x - mean) / std).to(dev)
    runs = [("fp32", False)] + ([("fp16", True)] if a.fp16 else [])
    for name, fp16 in runs:
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.float16, enabled=fp16):
            f = model.forward_features(x)
        save_file({"cls": f["x_norm_clstoken"].float().cpu().contiguous(),
                   "patch": f["x_norm_patchtokens"].float().cpu().contiguous()},
                  str(out / f"reference_{name}.safetensors"))
    print(json.dumps({"images": len(paths), "device": str(dev), "torch": torch.__version__,
                      "tf32": [torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32]}))


def compare(a):
    from safetensors.torch import load_file
    ours, ref = load_file(a.ours), load_file(a.reference)
    out = {}
    for k in ("cls", "patch"):
        o, r = ours[k].double(), ref[k].double()
        if o.shape != r.shape:
            sys.exit(f"{k}: shape {list(o.shape)} vs reference {list(r.shape)}")
        d = (o - r).abs()
        scale = r.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12)
        rel = d / scale
        out[k] = {"max_abs_diff": d.max().item(), "mean_abs_diff": d.mean().item(),
                  "max_abs_reference": r.abs().max().item(),
                  "max_rel_error": rel.max().item(), "mean_rel_error": rel.mean().item()}
    o, r = ours["cls"].double(), ref["cls"].double()
    out["cls_cosine_min"] = torch.nn.functional.cosine_similarity(o, r, dim=-1).min().item()
    print(json.dumps(out))


p = argparse.ArgumentParser()
sub = p.add_subparsers(dest="cmd", required=True)
m = sub.add_parser("make")
m.add_argument("--tree", required=True)
m.add_argument("--out", required=True)
m.add_argument("--n", type=int, default=32)
m.add_argument("--device", default="cpu")
m.add_argument("--fp16", action="store_true")
c = sub.add_parser("compare")
c.add_argument("ours")
c.add_argument("reference")
a = p.parse_args()
make(a) if a.cmd == "make" else compare(a)
