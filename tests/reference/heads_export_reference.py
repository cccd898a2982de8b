"""Reference side of tests/heads_export.rs.

usage: heads_export_reference.py head OUT_DIR
         DINOHead from the dinov2 package with random weights -> OUT/head.pth (torch.save) and
         OUT/head.safetensors (input, output, bottleneck output).
       heads_export_reference.py export OUT_DIR
         Loads OUT/exported.safetensors (written by our Rust model) into the dinov2 package's
         DinoVisionTransformer with strict=True and writes OUT/torch_features.safetensors:
         forward_features of OUT/input.safetensors, and create_linear_input (from
         dinov2/eval/linear.py, taken from the package's source because importing that module
         needs fvcore) for n_last_blocks 1 and 4, with and without avgpool.
"""
import ast, inspect, json, sys
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

mode, out = sys.argv[1], Path(sys.argv[2])
torch.set_num_threads(2)

if mode == "head":
    from dinov2.layers.dino_head import DINOHead

    g = torch.Generator().manual_seed(5)
    head = DINOHead(in_dim=96, out_dim=300, nlayers=3, hidden_dim=128, bottleneck_dim=64)
    with torch.no_grad():
        for name, p in head.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.1 if p.ndim > 1 else 0.05))
            if name.endswith("weight_g"):
                p.add_(1.0)
    x = torch.randn(5, 96, generator=g)
    with torch.no_grad():
        y = head(x)
        z = head.mlp(x)
    torch.save(head.state_dict(), out / "head.pth")
    save_file({"input": x, "output": y, "bottleneck": z}, out / "head.safetensors")
else:
    import dinov2.eval as ev
    from dinov2.layers import MemEffAttention, NestedTensorBlock as Block
    from dinov2.models.vision_transformer import DinoVisionTransformer

    src = (Path(ev.__file__).parent / "linear.py").read_text()
    fn = next(n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef) and n.name == "create_linear_input")
    scope = {"torch": torch}
    exec(ast.get_source_segment(src, fn), scope)
    create_linear_input = scope["create_linear_input"]

    cfg = json.loads((out / "config.json").read_text())
    m = DinoVisionTransformer(
        img_size=cfg["img_size"], patch_size=14, embed_dim=cfg["embed_dim"], depth=cfg["depth"],
        num_heads=cfg["num_heads"], mlp_ratio=4, block_fn=partial(Block, attn_class=MemEffAttention),
        init_values=cfg["init_values"], ffn_layer="mlp", block_chunks=0)
    m.load_state_dict(load_file(out / "exported.safetensors"), strict=True)
    m.eval()
    x = load_file(out / "input.safetensors")["input"]
    t = {}
    with torch.no_grad():
        f = m.forward_features(x)
        t["cls"] = f["x_norm_clstoken"]
        t["patch"] = f["x_norm_patchtokens"]
        layers = m.get_intermediate_layers(x, n=4, return_class_token=True)
        for n in (1, 4):
            for avg in (False, True):
                t[f"linear_input_{n}_{int(avg)}"] = create_linear_input(layers, n, avg)
    save_file({k: v.contiguous() for k, v in t.items()}, out / "torch_features.safetensors")
print("ok")
