"""PyTorch eager baseline for `dinov2 bench model`, driven over stdin so that its timings
interleave with ours in one run.

usage: torch_vit.py --impl dinov2|timm --arch vit_small --batch 8 --size 224 --threads N
                    [--device cpu|cuda] [--fp16]
Reads lines `fwd` / `fwdbwd` on stdin; for each runs one step and prints its milliseconds.
Prints `ready` once the model is built and warmed up.

- dinov2: the reference code from the `dinov2` PyPI package (DinoVisionTransformer, the
  vit_small/... factory settings with LayerScale), attention as that package computes it.
- timm: timm's `vit_*_patch14_dinov2` (the same network; attention through
  F.scaled_dot_product_attention, as ours), img_size = --size.
The forward runs under no_grad in eval mode; the forward+backward in train mode computes the
loss mean(cls^2) + mean(patch^2) and backpropagates into every parameter (grads set to None
before each step).
"""
import argparse, sys, time
from functools import partial

import torch

p = argparse.ArgumentParser()
p.add_argument("--impl", default="dinov2")
p.add_argument("--arch", default="vit_small")
p.add_argument("--batch", type=int, default=8)
p.add_argument("--size", type=int, default=224)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--device", default="cpu")
p.add_argument("--fp16", action="store_true")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
dev = torch.device(a.device)
dims = {"vit_small": (384, 12, 6, "mlp"), "vit_base": (768, 12, 12, "mlp"),
        "vit_large": (1024, 24, 16, "mlp"), "vit_giant2": (1536, 40, 24, "swiglufused")}[a.arch]

if a.impl == "dinov2":
    from dinov2.layers import MemEffAttention, NestedTensorBlock as Block
    from dinov2.models.vision_transformer import DinoVisionTransformer

    D, depth, heads, ffn = dims
    model = DinoVisionTransformer(img_size=a.size, patch_size=14, embed_dim=D, depth=depth, num_heads=heads,
                                  mlp_ratio=4, block_fn=partial(Block, attn_class=MemEffAttention),
                                  init_values=1e-5, ffn_layer=ffn, block_chunks=0)

    def features(x):
        f = model.forward_features(x)
        return f["x_norm_clstoken"], f["x_norm_patchtokens"]
else:
    import timm

    name = {"vit_small": "vit_small_patch14_dinov2", "vit_base": "vit_base_patch14_dinov2",
            "vit_large": "vit_large_patch14_dinov2", "vit_giant2": "vit_giant_patch14_dinov2"}[a.arch]
    model = timm.create_model(name, pretrained=False, img_size=a.size, num_classes=0)

    def features(x):
        t = model.forward_features(x)
        return t[:, 0], t[:, 1:]

model = model.to(dev)
x = torch.randn(a.batch, 3, a.size, a.size, device=dev)


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


def fwd():
    model.eval()
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.float16, enabled=a.fp16):
        c, _ = features(x)
    return c


def fwdbwd():
    model.train()
    model.zero_grad(set_to_none=True)
    with torch.autocast(dev.type, dtype=torch.float16, enabled=a.fp16):
        c, pt = features(x)
        loss = c.float().pow(2).mean() + pt.float().pow(2).mean()
    loss.backward()
    return loss


for f in (fwd, fwdbwd):
    f()
sync()
print("ready", flush=True)
for line in sys.stdin:
    f = {"fwd": fwd, "fwdbwd": fwdbwd}[line.strip()]
    sync()
    t = time.perf_counter()
    f()
    sync()
    print(f"{(time.perf_counter() - t) * 1e3:.3f}", flush=True)
