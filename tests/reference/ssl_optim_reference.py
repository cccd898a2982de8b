"""Reference side of tests/ssl_optim_parity.rs.

usage: ssl_optim_reference.py OUT_DIR
Writes
- OUT/ssl_optim.safetensors:
  - adamw_*: a small MLP (x * g -> Linear -> GELU -> Linear (+ e on some steps)) trained 5
    steps with torch.optim.AdamW(betas=(0.9, 0.999), foreach=False), one group per
    parameter whose lr and weight_decay change every step (the weight `w2` plays the frozen
    last layer: lr 0 on the first two steps; biases and `g` are not decayed; `e` takes part
    in steps 1, 2, 4 and 5 only, so its grad is None on step 3); initial parameters, inputs,
    the lr / wd tables, the loss, the parameters after every step and the final
    exp_avg / exp_avg_sq / step; the same as adamw_foreach_* with foreach=True and as
    adamw_fused_* with fused=True;
  - ema_*: teacher / student tensors and the teacher after dinov2's EMA update (momentum
    ema_m) through torch._foreach_mul_ / _foreach_add_;
  - clip_*: gradients of three "submodules" (one of them already below the threshold), each
    clipped with torch.nn.utils.clip_grad_norm_(max_norm=3.0) separately as dinov2 does,
    their total norms and the clipped gradients;
  - sched_<case>_<name>: the five schedules of dinov2's `build_schedulers` (lr, wd,
    momentum, teacher_temp, last_layer_lr) for iterations 0 .. total + 3, float64, for three
    configs; `cos_<case>`: CosineScheduler with warm-up and freeze directly;
- OUT/ssl_optim.json: `lr_<case>` (the sqrt_wrt_1024 learning rate of each schedule config,
  from dinov2's `apply_scaling_rules_to_cfg`), the schedule configs, and `groups_<case>`: the
  output of `get_params_groups_with_decay` (name, lr_multiplier, wd_multiplier,
  is_last_layer) on the dinov2 package's DinoVisionTransformer (embed 48, depth 4, 3 heads,
  patch 8, img 32, LayerScale, 2 register tokens added by hand; flat and chunked in 2) and DINOHead (in 48, out 64, hidden
  32, bottleneck 16, 3 layers) for two (layerwise_decay, patch_embed_lr_mult) settings.

dinov2/train/train.py and dinov2/utils/config.py import their training stack (fvcore,
omegaconf) at the top: `build_schedulers` and `apply_scaling_rules_to_cfg` are taken from the
package's source with `ast` and given the names they use.
"""
import ast, json, logging, math, sys, types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

out = Path(sys.argv[1])
torch.manual_seed(0)
torch.set_num_threads(2)
t = {}
js = {}

# --- AdamW
D, H, C, N = 12, 16, 5, 24
x = torch.randn(N, D)
y = torch.randint(0, C, (N,))
init = {
    "g": 1.0 + 0.1 * torch.randn(D),
    "w1": torch.randn(H, D) / D**0.5,
    "b1": 0.1 * torch.randn(H),
    "w2": torch.randn(C, H) / H**0.5,
    "b2": 0.1 * torch.randn(C),
    "e": 0.1 * torch.randn(C),
}
names = list(init)
lr_mult = {"g": 1.0, "w1": 0.5, "b1": 0.5, "w2": 1.0, "b2": 1.0, "e": 2.0}
wd_mult = {"g": 0.0, "w1": 1.0, "b1": 0.0, "w2": 1.0, "b2": 0.0, "e": 1.0}
base_lr = [1e-2, 2e-2, 1.5e-2, 5e-3, 1e-2]
base_wd = [0.04, 0.1, 0.2, 0.3, 0.4]
uses_e = [True, True, False, True, True]
lr_table = torch.zeros(len(base_lr), len(names), dtype=torch.float64)
wd_table = torch.zeros_like(lr_table)
for s, (blr, bwd) in enumerate(zip(base_lr, base_wd)):
    for i, k in enumerate(names):
        frozen = k == "w2" and s < 2
        lr_table[s, i] = 0.0 if frozen else blr * lr_mult[k]
        wd_table[s, i] = bwd * wd_mult[k]

for k in names:
    t[f"adamw_init_{k}"] = init[k]
t["adamw_x"], t["adamw_y"] = x, y
t["adamw_lr"], t["adamw_wd"] = lr_table, wd_table
t["adamw_uses_e"] = torch.tensor(uses_e)


def train(prefix, **impl):
    params = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    opt = torch.optim.AdamW([{"params": [params[k]]} for k in names], betas=(0.9, 0.999), **impl)

    def forward(use_e):
        h = F.gelu(F.linear(x * params["g"], params["w1"], params["b1"]))
        logits = F.linear(h, params["w2"], params["b2"])
        if use_e:
            logits = logits + params["e"]
        return F.cross_entropy(logits, y)

    for s in range(len(base_lr)):
        for i, group in enumerate(opt.param_groups):
            group["lr"] = float(lr_table[s, i])
            group["weight_decay"] = float(wd_table[s, i])
        opt.zero_grad(set_to_none=True)
        loss = forward(uses_e[s])
        loss.backward()
        opt.step()
        t[f"{prefix}loss{s + 1}"] = loss.detach().reshape(1)
        for k in names:
            t[f"{prefix}{k}_{s + 1}"] = params[k].detach().clone()
    for k in names:
        st = opt.state[params[k]]
        t[f"{prefix}exp_avg_{k}"] = st["exp_avg"].clone()
        t[f"{prefix}exp_avg_sq_{k}"] = st["exp_avg_sq"].clone()
        t[f"{prefix}step_{k}"] = st["step"].reshape(1).clone()


# the single-tensor path (PyTorch's default on the CPU), the multi-tensor path (its default on
# CUDA, dinov2's) and the fused kernel
train("adamw_", foreach=False)
train("adamw_foreach_", foreach=True)
train("adamw_fused_", fused=True)

# --- teacher EMA, as SSLMetaArch.update_teacher: _foreach_mul_ then _foreach_add_(alpha=1 - m)
ge = torch.Generator().manual_seed(3)
shapes = [(64, 32), (32,), (7, 5, 3), (1,)]
teacher = [torch.randn(sh, generator=ge) for sh in shapes]
student = [torch.randn(sh, generator=ge) for sh in shapes]
for i in range(len(shapes)):
    t[f"ema_teacher_{i}"], t[f"ema_student_{i}"] = teacher[i].clone(), student[i].clone()
m = 0.9953
with torch.no_grad():
    torch._foreach_mul_(teacher, m)
    torch._foreach_add_(teacher, student, alpha=1 - m)
for i in range(len(shapes)):
    t[f"ema_out_{i}"] = teacher[i]
t["ema_m"] = torch.tensor([m], dtype=torch.float64)

# --- clip_grad_norm_, per submodule
g = torch.Generator().manual_seed(1)
subs = {
    "backbone": [torch.randn(7, 5, generator=g), torch.randn(5, generator=g) * 3.0, torch.randn(2, 3, 4, generator=g)],
    "dino_head": [torch.randn(9, 4, generator=g) * 0.05, torch.randn(4, generator=g) * 0.05],
    "ibot_head": [torch.randn(30, generator=g) * 10.0],
}
for m, grads in subs.items():
    ps = [torch.nn.Parameter(torch.zeros_like(gr)) for gr in grads]
    for j, (p, gr) in enumerate(zip(ps, grads)):
        p.grad = gr.clone()
        t[f"clip_{m}_{j}"] = gr.clone()
    total = torch.nn.utils.clip_grad_norm_(ps, max_norm=3.0)
    t[f"clip_{m}_total"] = total.reshape(1)
    for j, p in enumerate(ps):
        t[f"clip_{m}_{j}_clipped"] = p.grad.clone()

# --- schedules: build_schedulers and apply_scaling_rules_to_cfg from the package's source
import dinov2.utils.utils as du

pkg = Path(du.__file__).parent.parent


def extract(path, fname, scope):
    src = path.read_text()
    node = next(n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef) and n.name == fname)
    exec(ast.get_source_segment(src, node), scope)
    return scope[fname]


logger = logging.getLogger("dinov2")
build_schedulers = extract(pkg / "train" / "train.py", "build_schedulers",
                           {"CosineScheduler": du.CosineScheduler, "logger": logger})
cases = {
    # dinov2's default config (vitl16_short) on 32 GPUs x 64
    "default": dict(world=32, batch=64, base_lr=0.004, epoch_len=1250, epochs=100, min_lr=1e-6,
                    warmup_epochs=10, weight_decay=0.04, weight_decay_end=0.4,
                    momentum_teacher=0.992, final_momentum_teacher=1.0, warmup_teacher_temp=0.04,
                    teacher_temp=0.07, warmup_teacher_temp_epochs=30, freeze_last_layer_epochs=1),
    "small": dict(world=3, batch=12, base_lr=2e-4, epoch_len=10, epochs=7, min_lr=1e-6,
                  warmup_epochs=2, weight_decay=0.04, weight_decay_end=0.2,
                  momentum_teacher=0.994, final_momentum_teacher=1.0, warmup_teacher_temp=0.04,
                  teacher_temp=0.07, warmup_teacher_temp_epochs=3, freeze_last_layer_epochs=1),
    # no warm-up, no freeze, constant wd, teacher temp without a ramp, a frozen last layer
    # longer than training
    "edge": dict(world=1, batch=7, base_lr=1e-3, epoch_len=9, epochs=4, min_lr=0.0,
                 warmup_epochs=0, weight_decay=0.05, weight_decay_end=0.05,
                 momentum_teacher=0.9, final_momentum_teacher=0.99, warmup_teacher_temp=0.07,
                 teacher_temp=0.07, warmup_teacher_temp_epochs=6, freeze_last_layer_epochs=5),
}
for case, c in cases.items():
    stub = types.SimpleNamespace(get_global_size=lambda w=c["world"]: w)
    scale = extract(pkg / "utils" / "config.py", "apply_scaling_rules_to_cfg",
                    {"math": math, "distributed": stub, "logger": logger})
    cfg = types.SimpleNamespace(
        optim=types.SimpleNamespace(scaling_rule="sqrt_wrt_1024", base_lr=c["base_lr"]),
        train=types.SimpleNamespace(batch_size_per_gpu=c["batch"]),
    )
    lr = scale(cfg).optim.lr
    js[f"lr_{case}"] = lr
    js[f"sched_{case}"] = c
    cfg = types.SimpleNamespace(
        train=types.SimpleNamespace(OFFICIAL_EPOCH_LENGTH=c["epoch_len"]),
        optim={k: c[k] for k in ("epochs", "min_lr", "warmup_epochs", "weight_decay",
                                 "weight_decay_end", "freeze_last_layer_epochs")} | {"lr": lr},
        teacher={k: c[k] for k in ("momentum_teacher", "final_momentum_teacher",
                                   "warmup_teacher_temp", "teacher_temp",
                                   "warmup_teacher_temp_epochs")},
    )
    scheds = build_schedulers(cfg)
    total = c["epochs"] * c["epoch_len"]
    for name, s in zip(["lr", "wd", "momentum", "teacher_temp", "last_layer_lr"], scheds):
        t[f"sched_{case}_{name}"] = torch.tensor([float(s[it]) for it in range(total + 3)],
                                                 dtype=torch.float64)
for case, kw in {"wf": dict(base_value=1.0, final_value=0.1, total_iters=20, warmup_iters=5,
                            start_warmup_value=0.2, freeze_iters=3),
                 "w1": dict(base_value=0.5, final_value=2.0, total_iters=6, warmup_iters=1,
                            start_warmup_value=0.3)}.items():
    s = du.CosineScheduler(**kw)
    js[f"cos_{case}"] = kw
    t[f"cos_{case}"] = torch.tensor([float(s[it]) for it in range(kw["total_iters"] + 2)],
                                    dtype=torch.float64)

# --- parameter groups
from dinov2.layers import DINOHead
from dinov2.models.vision_transformer import DinoVisionTransformer
from dinov2.utils.param_groups import get_params_groups_with_decay


def backbone(chunks):
    m = DinoVisionTransformer(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3,
                              init_values=1e-5, block_chunks=chunks)
    # The PyPI package predates registers: add the parameter HEAD's model has, so that the
    # rules are exercised on its name.
    m.register_tokens = torch.nn.Parameter(torch.zeros(1, 2, 48))
    return m


head = DINOHead(48, 64, nlayers=3, hidden_dim=32, bottleneck_dim=16)
for decay, pe_mult in [(0.9, 0.2), (0.75, 0.5)]:
    for case, module, prefix in [("flat", backbone(0), "backbone"), ("chunked", backbone(2), "backbone"),
                                 ("head", head, "dino_head")]:
        groups = get_params_groups_with_decay(module, lr_decay_rate=decay, patch_embed_lr_mult=pe_mult)
        js[f"groups_{case}_{decay}_{pe_mult}"] = [
            dict(name=f"{prefix}.{d['name']}", lr_multiplier=d["lr_multiplier"],
                 wd_multiplier=d["wd_multiplier"], is_last_layer=d["is_last_layer"])
            for d in groups
        ]

save_file({k: v.contiguous() for k, v in t.items()}, out / "ssl_optim.safetensors")
(out / "ssl_optim.json").write_text(json.dumps(js, indent=1))
print("ok")
