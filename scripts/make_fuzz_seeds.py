"""Small valid seeds for `dinov2 bench fuzz` that Rust cannot easily produce itself: real
torch.save checkpoints (zip + pickle), paddle.save-like pickles of numpy arrays (protocols 2
and 4), and JPEGs from Pillow (progressive, restart markers, CMYK, 4:2:2, optimised tables).
Run: .venv/bin/python scripts/make_fuzz_seeds.py tests/fixtures/fuzz"""
import collections, io, pickle, sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
g = torch.Generator().manual_seed(0)

# torch.save: a flat state dict, a nested one with a shared storage view and a parameter.
w = torch.randn(4, 3, generator=g)
torch.save({"a.weight": w, "a.bias": torch.zeros(3), "steps": torch.tensor(7)}, out / "flat.pth")
base = torch.arange(12, dtype=torch.float16)
torch.save(
    {
        "model": collections.OrderedDict(
            [("x", base.view(3, 4).t()), ("y", base[2:6]), ("p", torch.nn.Parameter(torch.ones(2, 2)))]
        ),
        "epoch": 3,
        "args": {"lr": 0.1, "name": "vit"},
        "teacher": {"backbone.b": torch.tensor([True, False]), "i": torch.arange(3)},
    },
    out / "nested.pth",
)

# paddle.save(state_dict) pickles a dict of numpy arrays plus the name map (protocol 4;
# 2 on request).
state = {
    "backbone.cls_token": np.arange(8, dtype=np.float32).reshape(1, 1, 8),
    "backbone.blocks.0.mlp.fc1.weight": np.ones((4, 6), dtype=np.float32),
    "linear.linear.bias": np.zeros(5, dtype=np.float64),
    "StructuredToParameterName@@": {"backbone.cls_token": "create_parameter_0.w_0"},
}
for proto in (2, 4):
    (out / f"tiny_p{proto}.pdparams").write_bytes(pickle.dumps(state, protocol=proto))
nested = {"model": {"w": ("linear_0.w_0", np.eye(3, dtype=np.float32))}, "scalar": np.float32(2.5)}
(out / "nested.pdparams").write_bytes(pickle.dumps(nested, protocol=4))

# JPEGs: small, textured.
rgb = Image.fromarray(
    ((np.indices((40, 56)).sum(0)[..., None] * np.array([3, 5, 7])) % 256).astype(np.uint8)
)
variants = {
    "baseline_420.jpg": dict(quality=80, subsampling=2),
    "baseline_444.jpg": dict(quality=90, subsampling=0),
    "baseline_422.jpg": dict(quality=75, subsampling=1),
    "progressive.jpg": dict(quality=80, progressive=True),
    "optimized.jpg": dict(quality=70, optimize=True),
    "restart.jpg": dict(quality=80, restart_marker_blocks=2),
    "restart_rows.jpg": dict(quality=80, restart_marker_rows=1, progressive=False),
}
for name, kw in variants.items():
    buf = io.BytesIO()
    try:
        rgb.save(buf, "JPEG", **kw)
    except TypeError:
        kw = {k: v for k, v in kw.items() if not k.startswith("restart")}
        rgb.save(buf, "JPEG", **kw)
    (out / name).write_bytes(buf.getvalue())
for mode, name in (("L", "gray.jpg"), ("CMYK", "cmyk.jpg")):
    buf = io.BytesIO()
    rgb.convert(mode).save(buf, "JPEG", quality=80)
    (out / name).write_bytes(buf.getvalue())
print(sorted(p.name for p in out.iterdir()))
