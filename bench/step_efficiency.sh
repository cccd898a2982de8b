#!/usr/bin/env bash
# The pretraining step before and after, side by side in one run: `dinov2 bench train` of two
# binaries (BASE, e.g. a build of an older commit, and NEW, this tree's) alternated REPEATS times
# on the tiny digits config (configs/digits_ssl_cpu.yaml, 4x64 ViT, batch 64) and on the ViT-S/14
# seed config (configs/dinov2_vits14_pretrain_in1k.yaml, batch VITS_BATCH on ImageNet-sized
# JPEGs). Prints per config the median images/s of the step on a pre-made batch and fed by the
# pipeline, and NEW / BASE; NEW's step-time breakdown is in its results.json.
# Usage: bench/step_efficiency.sh BASE_BIN [NEW_BIN=target/release/dinov2] [REPEATS=3]
# A baseline binary: git worktree add /tmp/base <commit> && (cd /tmp/base && cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: bench/step_efficiency.sh BASE_BIN [NEW_BIN] [REPEATS]}
new=${2:-target/release/dinov2}
reps=${3:-3}
py=.venv/bin/python
work=runs/step-efficiency
vits_batch=${VITS_BATCH:-4}
mkdir -p "$work"
[ -d "$work/digits/train" ] || "$py" bench/digits_tree.py "$work/digits" 32 >/dev/null
[ -d "$work/tree/train" ] || "$new" bench data --preset linear-eval --images 128 --seconds 1 --workdir "$work" >/dev/null
declare -A cfg=(
  [digits]="-c configs/digits_ssl_cpu.yaml -o train.dataset_path=$work/digits --iterations 20"
  [vits14]="-c configs/dinov2_vits14_pretrain_in1k.yaml -o train.dataset_path=$work/tree -o train.device=cpu -o train.num_workers=2 -o train.batch_size_per_gpu=$vits_batch --iterations 4"
)
for r in $(seq 1 "$reps"); do
  for name in digits vits14; do
    for which in base new; do
      bin=$base; [ "$which" = new ] && bin=$new
      out="$work/$name-$which-$r"
      # shellcheck disable=SC2086
      "$bin" bench train ${cfg[$name]} --workdir "$out" >"$out.log" 2>&1 || { cat "$out.log"; exit 1; }
      echo "$name $which run $r: $(grep -o 'fed by the pipeline | [0-9.]*' "$out.log" | head -1)"
    done
  done
done
"$py" - "$work" "$reps" <<'PY'
import json, statistics, sys
work, reps = sys.argv[1], int(sys.argv[2])
def runs(name, which):
    return [json.load(open(f"{work}/{name}-{which}-{r}/results.json")) for r in range(1, reps + 1)]
print(f"medians over {reps} alternated runs of `dinov2 bench train`")
print("| config | step | base images/s | new images/s | new / base |")
print("|---|---|---:|---:|---:|")
for name in ("digits", "vits14"):
    for label, key in (("pre-made batch", "premade_step_images_per_s"), ("fed by the pipeline", "step_images_per_s")):
        b = statistics.median(x[key] for x in runs(name, "base"))
        n = statistics.median(x[key] for x in runs(name, "new"))
        print(f"| {name} | {label} | {b:.2f} | {n:.2f} | {n / b:.2f}x |")
for name in ("digits", "vits14"):
    last = runs(name, "new")[-1]
    if "breakdown_fed" in last:
        bd = last["breakdown_fed"]
        total = sum(bd.values())
        parts = ", ".join(f"{k[:-2]} {1e3 * v:.1f} ms" for k, v in bd.items())
        print(f"{name}, new, fed: {parts} ({last['bound']}; step {1e3 * total:.1f} ms)")
PY
