"""Writes tests/fixtures/passl_vit_tiny.pdparams: a real `paddle.save` of a tiny PASSL-style
DINOv2 linear-probe model (`backbone.*` ViT + `linear.linear.*` head) with deterministic random
weights, for the Rust `.pdparams` reader (tests/pdparams.rs).

The ViT is DINOv2's layout at a tiny size: embed_dim 48, depth 2, 3 heads, patch 14, 224x224
images (pos_embed [1, 257, 48]), MLP ratio 4, qkv bias, LayerScale; the head is
`Linear(2 * 48, 10)` as in PASSL's `DINOv2LinearProbe` (CLS token + average-pooled patch tokens).
Weights are drawn with numpy RandomState(0) in the official PyTorch names and layouts (Linear
weight [out, in]) at realistic magnitudes (Linear/conv weights std 0.02, LayerNorm weights
around 1, LayerScale gammas around 0.1), then converted to PASSL's layout: key prefix
`backbone.`, 2-D `.weight` transposed to paddle's [in, out], the head as `linear.linear.*`.
They are loaded into a paddle `nn.Layer` whose `state_dict()` has exactly those names, and
saved as PASSL does (`paddle.save(model.state_dict(), path)`), so the file also holds paddle's
`StructuredToParameterName@@` entry.

paddle is not a project dependency; run this in a throwaway venv:

    python3 -m venv /tmp/paddle-venv
    /tmp/paddle-venv/bin/pip install paddlepaddle numpy
    /tmp/paddle-venv/bin/python python/make_pdparams_fixture.py [OUT]

OUT defaults to tests/fixtures/passl_vit_tiny.pdparams (relative to the repository root).
The file is a plain pickle of numpy arrays: `pickle.load` reads it without paddle installed.
"""

import pickle
import sys
from pathlib import Path

import numpy as np
import paddle
from paddle import nn

EMBED, DEPTH, HEADS, PATCH, IMG, CLASSES = 48, 2, 3, 14, 224, 10
TOKENS = 1 + (IMG // PATCH) ** 2
HIDDEN = 4 * EMBED


def torch_weights():
    """Official PyTorch (hub) names and layouts, plus the probe head as `linear.{weight,bias}`."""
    rng = np.random.RandomState(0)

    def normal(shape, std, mean=0.0):
        return (mean + std * rng.standard_normal(shape)).astype(np.float32)

    w = {
        "cls_token": normal((1, 1, EMBED), 0.02),
        "pos_embed": normal((1, TOKENS, EMBED), 0.02),
        "mask_token": normal((1, EMBED), 0.02),
        "patch_embed.proj.weight": normal((EMBED, 3, PATCH, PATCH), 0.02),
        "patch_embed.proj.bias": normal((EMBED,), 0.02),
    }
    for i in range(DEPTH):
        b = f"blocks.{i}."
        w[b + "norm1.weight"] = normal((EMBED,), 0.1, 1.0)
        w[b + "norm1.bias"] = normal((EMBED,), 0.02)
        w[b + "attn.qkv.weight"] = normal((3 * EMBED, EMBED), 0.02)
        w[b + "attn.qkv.bias"] = normal((3 * EMBED,), 0.02)
        w[b + "attn.proj.weight"] = normal((EMBED, EMBED), 0.02)
        w[b + "attn.proj.bias"] = normal((EMBED,), 0.02)
        w[b + "ls1.gamma"] = normal((EMBED,), 0.02, 0.1)
        w[b + "norm2.weight"] = normal((EMBED,), 0.1, 1.0)
        w[b + "norm2.bias"] = normal((EMBED,), 0.02)
        w[b + "mlp.fc1.weight"] = normal((HIDDEN, EMBED), 0.02)
        w[b + "mlp.fc1.bias"] = normal((HIDDEN,), 0.02)
        w[b + "mlp.fc2.weight"] = normal((EMBED, HIDDEN), 0.02)
        w[b + "mlp.fc2.bias"] = normal((EMBED,), 0.02)
        w[b + "ls2.gamma"] = normal((EMBED,), 0.02, 0.1)
    w["norm.weight"] = normal((EMBED,), 0.1, 1.0)
    w["norm.bias"] = normal((EMBED,), 0.02)
    w["linear.weight"] = normal((CLASSES, 2 * EMBED), 0.02)
    w["linear.bias"] = normal((CLASSES,), 0.02)
    return w


def to_passl(torch_w):
    """PASSL names and layouts: `backbone.` prefix, head under `linear.linear.`, 2-D
    `.weight` (Linear) transposed to [in, out]; mask_token and conv weights unchanged."""
    out = {}
    for k, v in torch_w.items():
        name = "linear.linear." + k[len("linear."):] if k.startswith("linear.") else "backbone." + k
        out[name] = np.ascontiguousarray(v.T) if k.endswith(".weight") and v.ndim == 2 else v
    return out


class LayerScale(nn.Layer):
    def __init__(self):
        super().__init__()
        self.gamma = self.create_parameter([EMBED])


class Attention(nn.Layer):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(EMBED, 3 * EMBED)
        self.proj = nn.Linear(EMBED, EMBED)


class Mlp(nn.Layer):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(EMBED, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, EMBED)


class Block(nn.Layer):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(EMBED, epsilon=1e-6)
        self.attn = Attention()
        self.ls1 = LayerScale()
        self.norm2 = nn.LayerNorm(EMBED, epsilon=1e-6)
        self.mlp = Mlp()
        self.ls2 = LayerScale()


class PatchEmbed(nn.Layer):
    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2D(3, EMBED, PATCH, stride=PATCH)


class VisionTransformer(nn.Layer):
    """The parameter structure of PASSL's DINOv2VisionTransformer (no forward needed)."""

    def __init__(self):
        super().__init__()
        self.pos_embed = self.create_parameter([1, TOKENS, EMBED])
        self.cls_token = self.create_parameter([1, 1, EMBED])
        self.mask_token = self.create_parameter([1, EMBED])
        self.patch_embed = PatchEmbed()
        self.blocks = nn.LayerList([Block() for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(EMBED, epsilon=1e-6)


class LinearClassifier(nn.Layer):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2 * EMBED, CLASSES)


class LinearProbe(nn.Layer):
    """PASSL's DINOv2LinearProbe: `backbone` + `linear` (a LinearClassifier)."""

    def __init__(self):
        super().__init__()
        self.backbone = VisionTransformer()
        self.linear = LinearClassifier()


def main():
    root = Path(__file__).resolve().parent.parent
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "tests/fixtures/passl_vit_tiny.pdparams"
    paddle.set_device("cpu")
    weights = to_passl(torch_weights())
    model = LinearProbe()
    sd = model.state_dict()
    assert set(sd) == set(weights), sorted(set(sd) ^ set(weights))
    for k, v in weights.items():
        assert list(sd[k].shape) == list(v.shape), (k, sd[k].shape, v.shape)
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in weights.items()})
    sd = model.state_dict()
    for k, v in weights.items():
        assert np.array_equal(sd[k].numpy(), v), k
    out.parent.mkdir(parents=True, exist_ok=True)
    paddle.save(sd, str(out))

    with open(out, "rb") as f:
        back = pickle.load(f)
    back.pop("StructuredToParameterName@@")
    assert list(back) == list(sd) and all(np.array_equal(back[k], v) for k, v in weights.items())
    n = sum(v.size for v in weights.values())
    print(f"wrote {out}: {len(weights)} tensors, {n} parameters, {out.stat().st_size} bytes "
          f"(paddle {paddle.__version__}, numpy {np.__version__})")


if __name__ == "__main__":
    main()
