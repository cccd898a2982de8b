#!/usr/bin/env bash
# The CPU learning check of DINOv2 pretraining (a few minutes on 2 cores):
#  1. scikit-learn's digits (shipped in the package) as a 32 px class-per-folder tree;
#  2. pretrain a tiny ViT on the training images (configs/digits_ssl_cpu.yaml), logging the
#     teacher's per-image and batch-marginal entropy (collapse shows as both equal: ln K for
#     uniform targets, ~0 for one prototype);
#  3. k-NN (and a linear probe) on the frozen teacher backbone vs the same backbone at random
#     initialisation, on the held-out images.
# Exits non-zero unless k-NN (k=20) beats the random backbone by 10 points and the targets
# keep at least 0.5 nats of information about the image.
# Extra arguments are passed to the pretraining as -o overrides (e.g. train.device=cuda
# compute_precision.grad_scaler=true for fp16 on a GPU). Results: runs/learning_check/.
# Environment: DINOV2_BIN (default target/release/dinov2), DINOV2_PYTHON (default the project
# venv), LEARNING_CHECK_DIR (default runs/learning_check), LEARNING_CHECK_PROBE_EPOCHS (10).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${DINOV2_PYTHON:-.venv/bin/python}"
bin="${DINOV2_BIN:-target/release/dinov2}"
out="${LEARNING_CHECK_DIR:-runs/learning_check}"
mkdir -p "$out"
[ -d "$out/digits/train" ] || "$py" bench/digits_tree.py "$out/digits" 32
rm -rf "$out/ssl" "$out/probe_pretrained" "$out/probe_random"
overrides=()
for o in "$@"; do overrides+=(-o "$o"); done
"$bin" train -c configs/digits_ssl_cpu.yaml -o train.dataset_path="$out/digits" -o train.output_dir="$out/ssl" "${overrides[@]}"
probe=(-c configs/tiny_lp_cpu.yaml
  -o DataLoader.Train.dataset.root="$out/digits" -o DataLoader.Eval.dataset.root="$out/digits"
  -o Model.class_num=10 -o Model.backbone.embed_dim=64 -o Model.backbone.depth=4 -o Model.backbone.num_heads=4
  -o Model.backbone.patch_size=4 -o Model.backbone.img_size=32
  -o DataLoader.Train.dataset.transform.0.RandomResizedCrop.size=32
  -o DataLoader.Eval.dataset.transform.0.Resize.size=32 -o DataLoader.Eval.dataset.transform.1.CenterCrop.size=32
  -o KNN.enabled=true -o "KNN.nb_knn=[10, 20]" -o Global.epochs="${LEARNING_CHECK_PROBE_EPOCHS:-10}")
"$bin" train "${probe[@]}" -o Global.output_dir="$out/probe_pretrained" \
  -o Global.pretrained_model="$out/ssl/teacher_backbone.safetensors" > "$out/pretrained.txt"
"$bin" train "${probe[@]}" -o Global.output_dir="$out/probe_random" > "$out/random.txt"
"$py" - "$out" <<'PY'
import json, math, sys
out = sys.argv[1]
recs = [json.loads(l) for l in open(f"{out}/ssl/metrics.jsonl") if l.strip()]
last = recs[-1]
import re
n_protos = int(re.search(r"head_n_prototypes: (\d+)", open(f"{out}/ssl/config.yaml").read()).group(1))
def knn(name):
    return {r["k"]: r["top1"] for r in map(json.loads, open(f"{out}/{name}/dinov2_custom_linearprobe/metrics.jsonl")) if r.get("kind") == "knn"}
def probe(name):
    ev = [r for r in map(json.loads, open(f"{out}/{name}/dinov2_custom_linearprobe/metrics.jsonl")) if r.get("kind") == "eval"]
    return max(r["top1"] for r in ev)
p, r = knn("probe_pretrained"), knn("probe_random")
print(f"pretraining: {last['iteration']} iterations, final loss {last['total_loss']:.4f}")
h_img, h_marg = last["teacher_entropy"], last["teacher_marginal_entropy"]
# Collapse to uniform: h_img = h_marg = ln K; to one prototype: h_img = h_marg = 0. The gap
# h_marg - h_img is the information the targets carry about the image (at most ln batch).
print(f"teacher DINO targets: entropy per image {h_img:.3f} nats, of the batch-mean target {h_marg:.3f} nats "
      f"(ln K = {math.log(n_protos):.3f}); information about the image {h_marg - h_img:.3f} nats")
print("| backbone | k-NN k=10 | k-NN k=20 | linear probe (best top-1) |")
print("|---|---:|---:|---:|")
print(f"| pretrained (teacher) | {p[10]*100:.1f} % | {p[20]*100:.1f} % | {probe('probe_pretrained')*100:.1f} % |")
print(f"| random initialisation | {r[10]*100:.1f} % | {r[20]*100:.1f} % | {probe('probe_random')*100:.1f} % |")
failed = []
summary = {"iterations": last["iteration"], "final_loss": last["total_loss"], "teacher_entropy": h_img,
           "teacher_marginal_entropy": h_marg, "ln_k": math.log(n_protos), "knn_pretrained": p,
           "knn_random": r, "probe_pretrained": probe("probe_pretrained"), "probe_random": probe("probe_random")}
if p[20] < r[20] + 0.10:
    failed.append(f"k-NN (k=20) {p[20]*100:.1f} % is not 10 points above the random backbone's {r[20]*100:.1f} %")
if h_marg - h_img < 0.5 or h_img > math.log(n_protos) - 0.5:
    failed.append("the teacher's targets collapsed (less than 0.5 nats from uniform or from image-independent)")
print(json.dumps(dict(summary, passed=not failed, failed=failed)))
if failed:
    sys.exit("learning check FAILED: " + "; ".join(failed))
print("learning check passed")
PY
