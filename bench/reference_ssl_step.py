"""The reference DINOv2 pretraining step, timed: dinov2's own SSLMetaArch.forward_backward + the
optimizer step of its train.py (AdamW over its parameter groups with the scheduled lr / wd /
last-layer lr, gradient clipping per student submodule, teacher EMA), in one process without
FSDP or xFormers (bench/dinov2_reference.py; attention through SDPA). On CUDA with --fp16 the
forward runs under torch.autocast(float16) and the loss through torch.amp.GradScaler (the
backward outside autocast), the counterpart of our `compute_precision.grad_scaler` path.

One batch is made once from real images (dinov2's DataAugmentationDINO + collate_data_and_cast
with iBOT masks), put on the device, and every timed step reuses it: the same "pre-made batch"
as `dinov2 bench train`'s step without the loader. Prints one JSON object:
  images_per_s (median over the timed steps, synchronised), step_s, losses, loss scale, peak
  memory (torch.cuda.max_memory_allocated / _reserved), device, torch version.

usage: reference_ssl_step.py --config configs/dinov2_vits14_pretrain_in1k.yaml --data TREE/train
           [--batch 128] [--iters 20] [--warmup 3] [--device cuda] [--fp16] [-o key=value ...]
"""
import argparse
import json
import os
import random
import statistics
import sys
import time
from functools import partial

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dinov2_reference as ref  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--config", required=True)
p.add_argument("--data", required=True, help="a class-per-folder image tree")
p.add_argument("--batch", type=int, default=None, help="default: the config's train.batch_size_per_gpu")
p.add_argument("--iters", type=int, default=20)
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--device", default="cuda")
p.add_argument("--fp16", action="store_true")
p.add_argument("--threads", type=int, default=None)
p.add_argument("--seed", type=int, default=0)
p.add_argument("-o", "--override", action="append", default=[], help="dotted.key=value (YAML value)")
args = p.parse_args()

if args.threads:
    torch.set_num_threads(args.threads)
dev = torch.device(args.device)
if args.fp16 and dev.type != "cuda":
    sys.exit("--fp16 needs a CUDA device")
random.seed(args.seed)
np.random.seed(args.seed)
torch.manual_seed(args.seed)

import torch.distributed as dist  # noqa: E402
os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("MASTER_PORT", str(29600 + os.getpid() % 1000))
dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=0, world_size=1)

ref.install(dev.type, sdpa=True)
from dinov2.train.train import apply_optim_scheduler, build_optimizer, build_schedulers  # noqa: E402
import yaml  # noqa: E402

overrides = {}
for o in args.override:
    key, value = o.split("=", 1)
    node = overrides
    *parents, leaf = key.split(".")
    for k in parents:
        node = node.setdefault(k, {})
    node[leaf] = yaml.safe_load(value)
layers = [args.config, overrides, {"compute_precision": {"grad_scaler": args.fp16}}]
if args.batch:
    layers.append({"train": {"batch_size_per_gpu": args.batch}})
cfg = ref.config(*layers)
B = cfg.train.batch_size_per_gpu

model = ref.build(cfg, dev)
scaler = torch.amp.GradScaler("cuda") if args.fp16 else None
autocast = partial(torch.autocast, dev.type, dtype=torch.float16, enabled=args.fp16)


def backprop_loss(loss):
    with torch.autocast(dev.type, enabled=False):
        (scaler.scale(loss) if scaler is not None else loss).backward()


model.backprop_loss = backprop_loss
optimizer = build_optimizer(cfg, model.get_params_groups())
lr_s, wd_s, mom_s, tt_s, ll_s = build_schedulers(cfg)

# one batch, as train.py's loader makes it, on the device
ds, collate = ref.data(cfg, args.data, torch.half if args.fp16 else torch.float32)
data = collate([ds[i % len(ds)] for i in range(B)])
data = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in data.items()}


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# past the warm-up epochs of the schedules, so that every parameter group moves
it0 = cfg.optim.freeze_last_layer_epochs * cfg.train.OFFICIAL_EPOCH_LENGTH
times, losses = [], []
if dev.type == "cuda":
    torch.cuda.reset_peak_memory_stats(dev)
for i in range(args.warmup + args.iters):
    it = it0 + i
    sync()
    t = time.perf_counter()
    apply_optim_scheduler(optimizer, lr_s[it], wd_s[it], ll_s[it])
    optimizer.zero_grad(set_to_none=True)
    with autocast():
        loss_dict = model.forward_backward(data, teacher_temp=tt_s[it])
    if scaler is not None:
        scaler.unscale_(optimizer)
        ref.clip_per_submodule(model, cfg.optim.clip_grad)
        scaler.step(optimizer)
        scaler.update()
    else:
        ref.clip_per_submodule(model, cfg.optim.clip_grad)
        optimizer.step()
    model.update_teacher(mom_s[it])
    sync()
    if i >= args.warmup:
        times.append(time.perf_counter() - t)
    total = sum(v.item() for v in loss_dict.values())
    losses.append(total)
    if not np.isfinite(total):
        sys.exit(f"reference loss became {total} at step {i}")

step = statistics.median(times)
out = {
    "impl": "dinov2 (PyPI) SSLMetaArch.forward_backward + AdamW step, SDPA attention, no FSDP",
    "config": args.config, "overrides": args.override, "batch": B, "device": str(dev),
    "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
    "fp16": args.fp16, "torch": torch.__version__, "iters": args.iters, "warmup": args.warmup,
    "step_s": step, "images_per_s": B / step, "step_seconds": times,
    "loss_first": losses[0], "loss_last": losses[-1],
    "loss_scale": scaler.get_scale() if scaler is not None else None,
    "max_memory_allocated_bytes": torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None,
    "max_memory_reserved_bytes": torch.cuda.max_memory_reserved(dev) if dev.type == "cuda" else None,
}
print(json.dumps(out))
dist.destroy_process_group()
