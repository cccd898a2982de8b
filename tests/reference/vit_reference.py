"""Reference outputs for the ViT parity tests (tests/vit_parity.rs).

For each case: random weights in the official key layout written by torch.save
(`<case>.pth`, read by our Rust .pth reader), and the inputs and reference outputs in
`<case>.safetensors`, computed by
- the `dinov2` PyPI package (facebookresearch/dinov2's DinoVisionTransformer; numerically the
  same as HEAD for models without registers), or
- timm's `vit_small_patch14_reg4_dinov2` for the register variant (HEAD's size-based,
  antialiased pos-embed resampling), with our weights mapped by timm's own `_convert_dinov2`.

usage: vit_reference.py OUT_DIR
"""
import json, sys
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import save_file

torch.manual_seed(0)
torch.set_num_threads(2)
out = Path(sys.argv[1])


def randomise(model, g):
    """Replace the reference init with values that make every parameter matter."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
                p.copy_(1.0 + 0.1 * r)
            elif name.endswith("gamma"):
                p.copy_(0.5 + 0.1 * r)
            elif name in ("cls_token", "mask_token", "register_tokens", "reg_token"):
                p.copy_(r)
            elif name == "pos_embed":
                p.copy_(0.5 * r)
            elif p.ndim >= 2:
                p.copy_(r / p.shape[1] ** 0.5 / (p[0].numel() / p.shape[1]) ** 0.5)
            else:
                p.copy_(0.1 * r)


def dinov2_model(cfg):
    from dinov2.layers import MemEffAttention, NestedTensorBlock as Block
    from dinov2.models.vision_transformer import DinoVisionTransformer

    return DinoVisionTransformer(
        img_size=cfg["img_size"], patch_size=14, embed_dim=cfg["embed_dim"], depth=cfg["depth"],
        num_heads=cfg["num_heads"], mlp_ratio=4, block_fn=partial(Block, attn_class=MemEffAttention),
        init_values=cfg["init_values"], ffn_layer=cfg["ffn_layer"], block_chunks=0,
        drop_path_rate=cfg["drop_path_rate"], drop_path_uniform=cfg["drop_path_uniform"],
    )


def save(case, cfg, state, tensors):
    torch.save(state, out / f"{case}.pth")
    save_file({k: v.contiguous() for k, v in tensors.items()}, out / f"{case}.safetensors")
    (out / f"{case}.json").write_text(json.dumps(cfg))


def dinov2_case(case, cfg, inputs, masks=None, intermediate=None, train_seed=None):
    g = torch.Generator().manual_seed(len(case))
    m = dinov2_model(cfg)
    randomise(m, g)
    m.eval()
    t = {}
    with torch.no_grad():
        for i, x in enumerate(inputs):
            t[f"input{i}"] = x
            f = m.forward_features(x, masks=masks if i == 0 else None)
            t[f"cls{i}"] = f["x_norm_clstoken"]
            t[f"patch{i}"] = f["x_norm_patchtokens"]
            t[f"prenorm{i}"] = f["x_prenorm"]
        if masks is not None:
            t["masks"] = masks
        if intermediate is not None:
            for j, (n, reshape) in enumerate(intermediate):
                layers = m.get_intermediate_layers(inputs[0], n=n, reshape=reshape, return_class_token=True, norm=True)
                for k, (p, c) in enumerate(layers):
                    t[f"inter{j}_{k}_patch"] = p
                    t[f"inter{j}_{k}_cls"] = c
        if train_seed is not None:
            m.train()
            torch.manual_seed(train_seed)
            f = m.forward_features(inputs[0], masks=None)
            t["train_cls"] = f["x_norm_clstoken"]
            t["train_patch"] = f["x_norm_patchtokens"]
    save(case, cfg, m.state_dict(), t)


def timm_register_case(case, cfg, inputs):
    import timm
    from timm.models.vision_transformer import _convert_dinov2

    g = torch.Generator().manual_seed(len(case))
    tm = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, depth=cfg["depth"],
                           embed_dim=cfg["embed_dim"], num_heads=cfg["num_heads"], img_size=cfg["img_size"],
                           dynamic_img_size=True, num_classes=0)
    # our (= dinov2 HEAD) layout: cls_token, pos_embed incl. the cls entry, register_tokens, mask_token
    dim = cfg["embed_dim"]
    n = (cfg["img_size"] // 14) ** 2
    state = {}
    for k, v in tm.state_dict().items():
        if k in ("cls_token", "pos_embed", "reg_token"):
            continue
        state[k] = v
    state["cls_token"] = torch.randn(1, 1, dim, generator=g)
    state["pos_embed"] = 0.5 * torch.randn(1, n + 1, dim, generator=g)
    state["register_tokens"] = torch.randn(1, 4, dim, generator=g)
    state["mask_token"] = torch.randn(1, dim, generator=g)
    tmp = dinov2_model({**cfg, "ffn_layer": "mlp", "drop_path_rate": 0.0, "drop_path_uniform": False})
    randomise(tmp, g)
    for k, v in tmp.state_dict().items():
        if k.startswith("blocks.") or k.startswith("norm.") or k.startswith("patch_embed."):
            state[k] = v
    tm.load_state_dict(_convert_dinov2(dict(state), tm), strict=True)
    tm.eval()
    t = {}
    with torch.no_grad():
        for i, x in enumerate(inputs):
            t[f"input{i}"] = x
            tokens = tm.forward_features(x)
            t[f"cls{i}"] = tokens[:, 0]
            t[f"reg{i}"] = tokens[:, 1:5]
            t[f"patch{i}"] = tokens[:, 5:]
    save(case, cfg, state, t)


def image(b, h, w):
    return torch.randn(b, 3, h, w)


small = dict(img_size=518, embed_dim=384, depth=2, num_heads=6, init_values=1.0, ffn_layer="mlp",
             drop_path_rate=0.0, drop_path_uniform=False, num_register_tokens=0)
n224 = (224 // 14) ** 2
masks = torch.rand(2, n224) < 0.4
dinov2_case("small", small, [image(2, 224, 224), image(1, 518, 518), image(2, 224, 308)], masks=masks,
            intermediate=[(2, False), ([0], True)])
dinov2_case("swiglu", dict(small, embed_dim=192, num_heads=3, ffn_layer="swiglufused", img_size=224),
            [image(2, 224, 224), image(1, 126, 252)])
dinov2_case("no_layerscale", dict(small, embed_dim=96, num_heads=2, init_values=None, img_size=224),
            [image(2, 224, 224)])
dinov2_case("stochastic_depth", dict(small, embed_dim=96, num_heads=2, img_size=224, depth=4,
                                     drop_path_rate=0.4, drop_path_uniform=True),
            [image(8, 98, 98)], train_seed=11)
dinov2_case("drop_path", dict(small, embed_dim=96, num_heads=2, img_size=224, depth=4,
                              drop_path_rate=0.1, drop_path_uniform=False),
            [image(8, 98, 98)], train_seed=12)
timm_register_case("registers", dict(small, num_register_tokens=4), [image(2, 224, 224), image(1, 518, 518),
                                                                       image(2, 224, 308)])
print("ok")
