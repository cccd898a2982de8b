"""Reference side of tests/features.rs: the PASSL fixture's weights through plain pickle +
numpy, mapped to the PyTorch layout as PASSL's loader implies (backbone. prefix dropped, 2-D
`.weight` transposed), into the `dinov2` package's DinoVisionTransformer (strict load).

usage: features_reference.py FIXTURE.pdparams OUT_DIR
  writes OUT/images/*.{jpg,png} (a few images of different sizes and modes) and
  OUT/reference.safetensors: `input` (random normalised images) with its `cls`/`patch`
  features, and `eval_cls`/`eval_patch`: the images through torchvision's evaluation
  transform (Resize(256, bicubic), CenterCrop(224), ToTensor, Normalize) and the model.
"""
import pickle, sys
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms

torch.set_num_threads(2)
fixture, out = Path(sys.argv[1]), Path(sys.argv[2])
with open(fixture, "rb") as f:
    raw = pickle.load(f)
state = {}
for k, v in raw.items():
    if not k.startswith("backbone."):
        continue
    v = np.asarray(v)
    if k.endswith(".weight") and v.ndim == 2:
        v = v.T
    state[k[len("backbone."):]] = torch.from_numpy(np.ascontiguousarray(v))

from dinov2.layers import MemEffAttention, NestedTensorBlock as Block
from dinov2.models.vision_transformer import DinoVisionTransformer

m = DinoVisionTransformer(img_size=224, patch_size=14, embed_dim=48, depth=2, num_heads=3, mlp_ratio=4,
                          block_fn=partial(Block, attn_class=MemEffAttention), init_values=1.0, block_chunks=0)
m.load_state_dict(state, strict=True)
m.eval()

g = torch.Generator().manual_seed(3)
x = torch.randn(2, 3, 224, 224, generator=g)
imgs = out / "images"
imgs.mkdir(parents=True, exist_ok=True)
rs = np.random.RandomState(1)
paths = []
for i, (w, h, mode, ext) in enumerate([(300, 260, "RGB", "jpg"), (260, 400, "RGB", "jpeg"),
                                       (500, 333, "L", "jpg"), (256, 256, "RGB", "png")]):
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (w + h))], -1)
    arr = np.clip(base + rs.randint(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr).convert(mode)
    p = imgs / f"img{i}.{ext}"
    im.save(p, quality=92) if ext != "png" else im.save(p)
    paths.append(p)
tf = transforms.Compose([transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
                         transforms.CenterCrop(224), transforms.ToTensor(),
                         transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
batch = torch.stack([tf(Image.open(p).convert("RGB")) for p in sorted(paths)])
with torch.no_grad():
    f = m.forward_features(x)
    e = m.forward_features(batch)
t = {"input": x, "cls": f["x_norm_clstoken"], "patch": f["x_norm_patchtokens"],
     "eval_cls": e["x_norm_clstoken"], "eval_patch": e["x_norm_patchtokens"]}
save_file({k: v.contiguous() for k, v in t.items()}, out / "reference.safetensors")
print("ok")
