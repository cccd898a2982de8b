"""Reference side of tests/ssl_step_parity.rs: two DINOv2 training iterations in PyTorch.

The iteration is dinov2's own code: `SSLMetaArch.forward_backward` is taken from the installed
package's source (ssl_meta_arch.py imports FSDP/fvcore/xFormers at module level) and run with
  - xFormers' `fmha.BlockDiagonalMask` replaced by its meaning (concatenate the head inputs
    along the token axis, split the output back: rows are independent),
  - `NestedTensorBlock` on a list of crops running each crop separately (what forward_nested
    computes; drop path is 0 here),
  - `.cuda(non_blocking=True)` removed (CPU),
then train.py's step: AdamW(param groups of dinov2/utils/param_groups.py, fused, foreach),
`apply_optim_scheduler`, `clip_grad_norm_(3.0)` per student submodule, `update_teacher(m)`.

usage: ssl_step_reference.py DIR   (reads DIR/config.json, DIR/student.safetensors,
DIR/batch.safetensors; writes DIR/reference.safetensors)
"""
import ast, copy, json, sys, tempfile, types
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

d = Path(sys.argv[1])
cfg = json.loads((d / "config.json").read_text())
torch.set_num_threads(2)
dist.init_process_group("gloo", init_method=f"file://{tempfile.mktemp()}", rank=0, world_size=1)

import dinov2.layers.block as blk
import dinov2
from dinov2.layers import DINOHead, MemEffAttention, NestedTensorBlock as Block
from dinov2.loss import DINOLoss, KoLeoLoss, iBOTPatchLoss
from dinov2.models.vision_transformer import DinoVisionTransformer
from dinov2.utils.param_groups import fuse_params_groups, get_params_groups_with_decay

_orig = blk.NestedTensorBlock.forward
blk.NestedTensorBlock.forward = lambda self, x: [_orig(self, t) for t in x] if isinstance(x, list) else _orig(self, x)


class BlockDiagonalMask:
    def __init__(self, sizes):
        self.sizes = sizes

    @classmethod
    def from_tensor_list(cls, ts):
        return cls([t.shape[1] for t in ts]), torch.cat(ts, 1)

    def split(self, t):
        return list(t.split(self.sizes, dim=1))


src = (Path(dinov2.__file__).parent / "train" / "ssl_meta_arch.py").read_text()
cls = next(n for n in ast.parse(src).body if isinstance(n, ast.ClassDef) and n.name == "SSLMetaArch")
fns = {}
for name in ("forward_backward", "update_teacher"):
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name)
    code = ast.get_source_segment(src, fn).replace(".cuda(non_blocking=True)", "")
    code = "\n".join(line[4:] if line.startswith("    ") else line for line in code.splitlines())
    scope = {"torch": torch, "fmha": types.SimpleNamespace(BlockDiagonalMask=BlockDiagonalMask),
             "reshard_fsdp_model": lambda m: None,
             "get_fsdp_modules": lambda m: [types.SimpleNamespace(params=list(m.parameters()))]}
    exec(code, scope)
    fns[name] = scope[name]

def build():
    return torch.nn.ModuleDict({
    "backbone": DinoVisionTransformer(
        img_size=cfg["img_size"], patch_size=cfg["patch_size"], embed_dim=cfg["embed_dim"], depth=cfg["depth"],
        num_heads=cfg["num_heads"], mlp_ratio=4, block_fn=partial(Block, attn_class=MemEffAttention),
        init_values=cfg["layerscale"], ffn_layer="mlp", block_chunks=0, drop_path_rate=0.0),
    "dino_head": DINOHead(in_dim=cfg["embed_dim"], out_dim=cfg["k"], hidden_dim=cfg["hidden"],
                          bottleneck_dim=cfg["bottleneck"], nlayers=3),
    })


# As SSLMetaArch: the teacher is built alike and loads the student's state dict.
student, teacher = build(), build()
student.load_state_dict(load_file(d / "student.safetensors"), strict=True)
teacher.load_state_dict(student.state_dict())
for p in teacher.parameters():
    p.requires_grad = False
student.train()
teacher.eval()
ns = types.SimpleNamespace
self = ns(
    cfg=ns(crops=ns(local_crops_number=cfg["local_crops"]), train=ns(centering=cfg["centering"]),
           dino=ns(koleo_loss_weight=0.1)),
    do_dino=True, do_ibot=True, do_koleo=True, ibot_separate_head=False,
    student=student, teacher=teacher,
    dino_loss=DINOLoss(cfg["k"]), ibot_patch_loss=iBOTPatchLoss(cfg["k"]), koleo_loss=KoLeoLoss(),
    dino_loss_weight=1.0, ibot_loss_weight=1.0,
    backprop_loss=lambda loss: loss.backward(), fsdp_synchronize_streams=lambda: None,
)
groups = []
for m in student.values():
    g = fuse_params_groups(get_params_groups_with_decay(m, lr_decay_rate=cfg["layerwise_decay"],
                                                        patch_embed_lr_mult=cfg["patch_embed_lr_mult"]))
    for x in g:
        x["foreach"] = True
    groups += g
opt = torch.optim.AdamW(groups, betas=(0.9, 0.999))
b = load_file(d / "batch.safetensors")
images = {
    "collated_global_crops": b["global"], "collated_local_crops": b["local"], "collated_masks": b["masks"],
    "mask_indices_list": b["mask_indices"], "masks_weight": b["masks_weight"],
    "n_masked_patches": torch.tensor([b["mask_indices"].shape[0]]), "upperbound": int(b["upperbound"]),
}
out = {}
for step, v in enumerate(cfg["steps"], 1):
    for g in opt.param_groups:  # train.py apply_optim_scheduler
        g["weight_decay"] = v["wd"] * g["wd_multiplier"]
        g["lr"] = (v["last_layer_lr"] if g["is_last_layer"] else v["lr"]) * g["lr_multiplier"]
    opt.zero_grad(set_to_none=True)
    losses = fns["forward_backward"](self, images, teacher_temp=v["teacher_temp"])
    for k, x in losses.items():
        out[f"step{step}.{k}"] = x.detach().float().reshape(1)
    for m in student.values():
        torch.nn.utils.clip_grad_norm_(m.parameters(), cfg["clip_grad"])
    opt.step()
    fns["update_teacher"](self, v["momentum"])
for k, x in student.state_dict().items():
    out[f"student.{k}"] = x
for k, x in teacher.state_dict().items():
    out[f"teacher.{k}"] = x
out["dino_center"] = self.dino_loss.center
out["ibot_center"] = self.ibot_patch_loss.center
save_file({k: v.contiguous() for k, v in out.items()}, d / "reference.safetensors")
print("ok")
