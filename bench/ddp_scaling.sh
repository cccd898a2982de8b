#!/usr/bin/env bash
# Data-parallel scaling on this machine's CPU cores (Gloo over loopback): the same global batch
# of ViT-S/14 DINOv2 pretraining (the seed config: 2x224 + 8x98 crops, 65536-way heads) run as
# 1 process x batch 2B (all cores) and as 2 processes x batch B (half the cores each), started
# by `dinov2 launch`. Prints per-iteration step time, the time inside collectives (the wait for
# the gradient all-reduce, centres) and the exposed gradient all-reduce (`allreduce_exposed_s`:
# the wait after the backward pass for buckets still in flight; "n/a" for a binary that does not
# log it), medians over the logged iterations after the first.
# Usage: bench/ddp_scaling.sh [ITERATIONS=6] [GLOBAL_BATCH=4]   (DINOV2_BIN: another binary)
set -euo pipefail
cd "$(dirname "$0")/.."
its=${1:-6}
gb=${2:-4}
bin=${DINOV2_BIN:-target/release/dinov2}
py=.venv/bin/python
work=runs/ddp-scaling
mkdir -p "$work"
# a small generated tree of ImageNet-sized JPEGs (cached by bench data)
[ -d "$work/tree/train" ] || "$bin" bench data --preset linear-eval --images 128 --seconds 1 --workdir "$work" >/dev/null
common=(-c configs/dinov2_vits14_pretrain_in1k.yaml -o train.dataset_path="$work/tree" -o train.device=cpu
  -o train.num_workers=1 -o train.max_iterations="$its" -o train.log_every=1 -o train.saveckp_freq=1000)
rm -rf "$work/one" "$work/two"
"$bin" train "${common[@]}" -o train.output_dir="$work/one" -o train.batch_size_per_gpu="$gb" >/dev/null
"$bin" launch --nproc-per-node 2 -- train "${common[@]}" -o train.output_dir="$work/two" \
  -o train.batch_size_per_gpu=$((gb / 2)) >/dev/null
"$py" - "$work" "$gb" <<'PY'
import json, statistics, sys
work, gb = sys.argv[1], int(sys.argv[2])
def rows(name):
    r = [json.loads(l) for l in open(f"{work}/{name}/metrics.jsonl") if '"step_s"' in l]
    return r[1:] if len(r) > 1 else r
print(f"ViT-S/14 pretraining step, global batch {gb}, CPU, medians over {len(rows('one'))} iterations")
print("| processes | batch per process | step s | in collectives s | exposed all-reduce s | images/s |")
print("|---:|---:|---:|---:|---:|---:|")
for name, n in (("one", 1), ("two", 2)):
    r = rows(name)
    step = statistics.median(x["step_s"] for x in r)
    comm = statistics.median(x["comm_s"] for x in r)
    ex = [x["allreduce_exposed_s"] for x in r if x.get("allreduce_exposed_s") is not None]
    exposed = f"{statistics.median(ex):.3f}" if ex else "n/a"
    print(f"| {n} | {gb // n} | {step:.2f} | {comm:.3f} | {exposed} | {gb / step:.2f} |")
PY
