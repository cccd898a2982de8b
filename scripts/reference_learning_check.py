"""Reference DINOv2 (PyPI `dinov2`) on the tiny digits learning-check recipe, CPU, fp32, no FSDP/xFormers:
the same data, model size and schedule as scripts/learning_check.sh, run by dinov2's own code, to tell a
collapse of the recipe from a bug of the port. Prints one JSON line per --log_every iterations with the
teacher's DINO-target entropies (H_img per image, H_marg of the batch mean).

  .venv/bin/python scripts/reference_learning_check.py                          # dinov2's defaults: collapses
  .venv/bin/python scripts/reference_learning_check.py --layerscale 1.0 \
      --centering sinkhorn_knopp --tt 0.012                                      # configs/digits_ssl_cpu.yaml
(the digits tree comes from scripts/learning_check.sh: runs/learning_check/digits; ~3 min alone on 2 cores)

dinov2's training code runs in one process without FSDP or xFormers, patched as
bench/dinov2_reference.py describes (the same math as the GPU path).
Teacher DINO-target entropies are captured by wrapping dino_loss.softmax_center_teacher or
sinkhorn_knopp_teacher (its output is exactly teacher_dino_softmaxed_centered_list before .view).
"""
import argparse, math, sys, time, random, json

import os
import numpy as np
import torch

p = argparse.ArgumentParser()
p.add_argument("--iters", type=int, default=400)
p.add_argument("--layerscale", type=float, default=1e-5)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--centering", default="centering")
p.add_argument("--tt", type=float, default=None)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--workers", type=int, default=1)
p.add_argument("--log_every", type=int, default=5)
p.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "runs/learning_check/digits/train"))
args = p.parse_args()

torch.set_num_threads(args.threads)
import torch.distributed as dist
os.environ.setdefault('MASTER_ADDR','127.0.0.1'); os.environ.setdefault('MASTER_PORT','29533')
dist.init_process_group('gloo', rank=0, world_size=1)
random.seed(args.seed); np.random.seed(args.seed); torch.manual_seed(args.seed)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import dinov2_reference as ref
ref.install("cpu")
from dinov2.train.train import build_schedulers, apply_optim_scheduler, build_optimizer

# 1) config
cfg = ref.config({
    "compute_precision": {"grad_scaler": False},
    "train": {"batch_size_per_gpu": 64, "OFFICIAL_EPOCH_LENGTH": 25, "centering": args.centering},
    "student": {"arch": "custom", "embed_dim": 64, "depth": 4, "num_heads": 4,
                "patch_size": 4, "drop_path_rate": 0.1, "layerscale": args.layerscale,
                "ffn_layer": "mlp", "block_chunks": 0, "qkv_bias": True, "proj_bias": True, "ffn_bias": True},
    "teacher": dict({"momentum_teacher": 0.99, "warmup_teacher_temp_epochs": 4}, **({} if args.tt is None else {"warmup_teacher_temp": args.tt, "teacher_temp": args.tt})),
    "dino": {"head_n_prototypes": 1024, "head_bottleneck_dim": 64, "head_hidden_dim": 256, "koleo_loss_weight": 0.1},
    "ibot": {"head_n_prototypes": 1024, "head_bottleneck_dim": 64, "head_hidden_dim": 256, "loss_weight": 1.0,
             "mask_ratio_min_max": [0.1, 0.5], "mask_sample_probability": 0.5, "separate_head": False},
    "optim": {"epochs": 16, "base_lr": 0.004, "warmup_epochs": 2, "freeze_last_layer_epochs": 1},
    "crops": {"global_crops_size": 32, "global_crops_scale": [0.5, 1.0], "local_crops_size": 16,
              "local_crops_number": 4, "local_crops_scale": [0.15, 0.5]},
})
print(f"lr={cfg.optim.lr:.6f} layerscale={cfg.student.layerscale} iters={args.iters}", flush=True)

# 2) model (what prepare_for_distributed_training does, minus FSDP)
model = ref.build(cfg)

captured = {}
_orig_smc = model.dino_loss.softmax_center_teacher
def _smc(t, teacher_temp):
    out = _orig_smc(t, teacher_temp=teacher_temp); captured["dino"] = out.detach(); return out
model.dino_loss.softmax_center_teacher = _smc
_orig_ismc = model.ibot_patch_loss.softmax_center_teacher
def _ismc(t, teacher_temp):
    out = _orig_ismc(t, teacher_temp=teacher_temp); captured["ibot"] = out.detach(); return out
model.ibot_patch_loss.softmax_center_teacher = _ismc
_orig_sk = model.dino_loss.sinkhorn_knopp_teacher
def _sk(t, teacher_temp, n_iterations=3):
    out = _orig_sk(t, teacher_temp=teacher_temp, n_iterations=n_iterations); captured["dino"] = out.detach(); return out
model.dino_loss.sinkhorn_knopp_teacher = _sk
_orig_isk = model.ibot_patch_loss.sinkhorn_knopp_teacher
def _isk(t, teacher_temp, n_masked_patches_tensor, n_iterations=3):
    out = _orig_isk(t, teacher_temp=teacher_temp, n_masked_patches_tensor=n_masked_patches_tensor, n_iterations=n_iterations); captured["ibot"] = out.detach(); return out
model.ibot_patch_loss.sinkhorn_knopp_teacher = _isk

optimizer = build_optimizer(cfg, model.get_params_groups())
lr_s, wd_s, mom_s, tt_s, ll_s = build_schedulers(cfg)

# 3) data
ds, collate = ref.data(cfg, args.data)
g = torch.Generator(); g.manual_seed(args.seed)
sampler = torch.utils.data.RandomSampler(ds, replacement=False, num_samples=10**8, generator=g)  # infinite-ish
loader = torch.utils.data.DataLoader(ds, batch_size=64, sampler=sampler, num_workers=args.workers, drop_last=True,
                                     collate_fn=collate, persistent_workers=args.workers > 0)
print(f"dataset: {len(ds)} images", flush=True)

def ent(pr):  # rows are distributions
    return -(pr * torch.log(pr.clamp_min(1e-30))).sum(-1)

t0 = time.time()
it_loader = iter(loader)
for it in range(args.iters):
    data = next(it_loader)
    lr, wd, mom, tt, ll = lr_s[it], wd_s[it], mom_s[it], tt_s[it], ll_s[it]
    apply_optim_scheduler(optimizer, lr, wd, ll)
    optimizer.zero_grad(set_to_none=True)
    loss_dict = model.forward_backward(data, teacher_temp=tt)
    ref.clip_per_submodule(model, cfg.optim.clip_grad)
    optimizer.step()
    model.update_teacher(mom)
    ld = {k: v.item() for k, v in loss_dict.items()}
    if any(math.isnan(v) for v in ld.values()):
        print("NaN", it, ld); break
    if it % args.log_every == 0 or it == args.iters - 1:
        T = captured["dino"]  # (2B, K) == teacher_dino_softmaxed_centered_list.flatten(0,1)
        ib = captured["ibot"].reshape(-1, T.shape[-1])
        rec = dict(it=it, t=round(time.time() - t0, 1), lr=lr, wd=wd, mom=mom, teacher_temp=tt,
                   total=sum(ld.values()), **ld,
                   H_img=ent(T).mean().item(), H_marg=ent(T.mean(0)).item(),
                   tmax=T.max(-1).values.mean().item(), n_argmax=int(T.argmax(-1).unique().numel()),
                   ibot_H_img=ent(ib).mean().item(), ibot_H_marg=ent(ib.mean(0)).item(),
                   center_norm=model.dino_loss.center.norm().item())
        print(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in rec.items()}), flush=True)
print(f"done {args.iters} iters in {time.time()-t0:.1f}s", flush=True)
