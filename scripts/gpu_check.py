"""The GPU acceptance run of dinov2-rs (run it through scripts/gpu_check.sh, which sets up the
libraries and the Python packages first). Checks, in order of importance, each a real `dinov2`
command next to its PyTorch reference on the same machine:

  1. doctor      the binary on this machine: libtorch version and the libraries it loaded (from
                 where), CUDA device, cuDNN, c10d backends (gloo, nccl); nvidia-smi; ldd
  2. features    `dinov2 features` vs the reference `dinov2` ViT-S/14 in the same PyTorch on the
                 same device: fp32 with TF32 off (max |diff| <= 1e-4), and --fp16 vs the reference
                 under torch.autocast(float16) (max and mean relative error)
  3. probe       the seed linear-probe config (FP16.level O1) on a random backbone and a
                 10-class tree whose classes differ by colour: loss finite and falling, loss scale and skipped steps,
                 top-1 above chance; a run stopped at a mid-run checkpoint and resumed ends where
                 the uninterrupted run ends
  4. pretrain    the seed ViT-S/14 pretraining config with compute_precision.grad_scaler:
                 no NaN, loss scale, images/s of the whole step, peak GPU memory; `dinov2 bench
                 train` (pipeline alone, the step on a pre-made batch, the step fed by the pipeline)
  5. reference   dinov2's own SSLMetaArch.forward_backward + optimizer step (fp16 autocast + grad
                 scaler, SDPA), same config, batch and crops: images/s and memory next to ours
  6. model       `dinov2 bench model --fp16` at two batch sizes against PyTorch eager (dinov2, timm)
  7. nccl        `dinov2 launch --nproc-per-node 1` pretraining steps through NCCL (one GPU: a world
                 of one, every collective run), all-reduce time per step
  8. data        `dinov2 bench data --preset dinov2` with 1..16 workers and --compare (torchvision's
                 DataLoader) at the most; the CPU's SIMD and the kernels the pipeline picks
  9. learning    scripts/learning_check.sh on the GPU in fp16 (scikit-learn's digits): the teacher
                 beats a random backbone in k-NN and its targets do not collapse (the dry run only
                 runs its steps, 10 iterations, unjudged)
 10. demo        `dinov2 demo` at its default sizes: it trains on the GPU in fp16 and says so, its
                 summary opens with the three comparisons (conversion vs the python-lmdb writer,
                 pipeline vs torchvision's DataLoader, pretrained vs random initialisation), each
                 baseline measured, and pretrained beats random by >= 15 points (linear, k-NN k=20)

Every step writes its figures, verdict and the exact commands into OUT/gpu_check.json and
OUT/gpu_check.md as soon as it ends (a time-out leaves the steps done so far), and its commands'
output into WORK/logs/, packed into OUT/logs.tar.gz after every step (OUT holds these three files
only; the data and the runs stay in WORK, by default OUT/work). --dry-run does the same on the CPU at tiny
sizes (CI runs it: every step, path and output file is exercised on every submission).

usage: gpu_check.py --out OUT --bin BIN --python PY [--dry-run] [--budget SECONDS] [--only a,b]
"""
import argparse
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (name, what, seconds the step needs on an H100 at least to be worth starting, its cap)
STEPS = [
    ("doctor", "binary, libraries, CUDA, cuDNN, c10d backends", 5, 30),
    ("features", "dinov2 features vs the reference ViT-S/14, fp32 and fp16", 20, 90),
    ("probe", "linear probe, seed config, FP16 O1, resume", 30, 120),
    ("pretrain", "ViT-S/14 seed pretraining, fp16 + grad scaler, bench train fp16 and bf16", 50, 200),
    ("reference", "dinov2's own pretraining step, same batch", 30, 120),
    ("model", "bench model --fp16 vs PyTorch eager", 20, 90),
    ("nccl", "launch --nproc-per-node 1 through NCCL", 20, 90),
    ("data", "bench data, 1..16 workers, vs torchvision", 20, 120),
    ("learning", "digits pretraining in fp16 learns (k-NN vs random)", 60, 150),
    ("demo", "dinov2 demo: trains on the GPU in fp16, the three comparisons, pretrained beats random", 60, 240),
]


class Ctx:
    def __init__(self, a):
        self.out = Path(a.out).resolve()
        self.work = Path(a.workdir).resolve() if a.workdir else self.out / "work"
        self.logs = self.work / "logs"
        self.bin = str(Path(a.bin).resolve())
        self.python = a.python
        self.dry = a.dry_run
        self.device = "cpu" if self.dry else "cuda"
        self.t0 = time.time()
        self.deadline = self.t0 + a.budget
        self.cores = os.cpu_count() or 1
        self.results = {"steps": {}}
        self.tree = self.work / "tree"
        # sizes: an H100 with 16 cores, or tiny CPU ones for the dry run
        if self.dry:
            self.s = dict(per_class=12, val_per_class=4, feat_n=4, probe_epochs=4, probe_split=2,
                          pre_iters=6, pre_batch=4, bench_iters=3, ref_iters=2, model_batches=[2],
                          model_size=56, model_reps=2, nccl_iters=4, data_workers=[1, 2], data_secs=1.0,
                          data_batch=8, workers=2)
        else:
            self.s = dict(per_class=160, val_per_class=40, feat_n=32, probe_epochs=8, probe_split=4,
                          pre_iters=50, pre_batch=128, bench_iters=20, ref_iters=20, model_batches=[64, 128],
                          model_size=224, model_reps=10, nccl_iters=20,
                          data_workers=[w for w in (1, 2, 4, 8, 16) if w <= self.cores] or [1],
                          data_secs=4.0, data_batch=64, workers=min(16, self.cores))

    def left(self):
        return self.deadline - time.time()


class StepFailed(Exception):
    pass


class GpuMemory:
    """Samples the GPU's used memory with nvidia-smi while a command runs (the same measure for
    our process and the reference's: the CUDA context plus what the caching allocator holds)."""

    def __init__(self, enabled):
        self.enabled = enabled and shutil.which("nvidia-smi") is not None
        self.peak_mib = None
        self.proc = None

    def __enter__(self):
        if self.enabled:
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-lms", "100"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.values = []
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.values.append(float(line.split(",")[0]))
            except ValueError:
                pass

    def __exit__(self, *exc):
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
            self.thread.join(timeout=2)
            self.peak_mib = max(self.values) if self.values else None


def run(ctx, step, name, cmd, cap, env=None, gpu_memory=False, check=True):
    """Runs `cmd` (a list), logs its output to logs/<name>.log, records the command line in
    the step; returns (completed process, seconds, peak GPU MiB)."""
    timeout = min(cap, ctx.left())
    if timeout < 3:
        raise StepFailed(f"no time left for {name}")
    line = " ".join(shlex.quote(str(c)) for c in cmd).replace(f"{ROOT}/", "")
    step["commands"].append(line)
    full_env = dict(os.environ, **(env or {}))
    t = time.time()
    with GpuMemory(gpu_memory and not ctx.dry) as mem:
        # a session of its own, so that a time-out ends its children too (launched ranks, the
        # learning check's runs)
        proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=full_env, cwd=ROOT, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            (ctx.logs / f"{name}.log").write_text(f"$ {line}\n(timed out after {timeout:.0f} s)\n"
                                                  f"--- stdout\n{out}\n--- stderr\n{err}")
            raise StepFailed(f"{name} timed out after {timeout:.0f} s")
    p = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    secs = time.time() - t
    (ctx.logs / f"{name}.log").write_text(f"$ {line}\n# exit {p.returncode} after {secs:.1f} s\n"
                                          f"--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}")
    if check and p.returncode != 0:
        tail = (p.stderr.strip() or p.stdout.strip()).splitlines()[-3:]
        raise StepFailed(f"{name} exited {p.returncode}: {' | '.join(tail)}")
    return p, secs, mem.peak_mib


def last_json(text):
    """The last line of `text` that parses as a JSON object."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    raise StepFailed("no JSON result in the output")


def metrics(path):
    recs = []
    for line in Path(path).read_text().splitlines():
        try:
            recs.append(json.loads(line))
        except ValueError:
            pass
    return recs


def judge(step, name, ok, value, target):
    step["checks"].append({"check": name, "ok": bool(ok), "value": value, "target": target})


def key(step, label, value):
    """A line of the report's key figures."""
    step.setdefault("key_figures", []).append([label, value])


def dinov2(ctx, *args):
    return [ctx.bin, *args]


def ensure_tree(ctx, step):
    if (ctx.tree / ".synth.json").exists():
        return
    run(ctx, step, "generate", dinov2(ctx, "generate", "--out", ctx.tree, "--classes", 10,
                                      "--train-per-class", ctx.s["per_class"],
                                      "--val-per-class", ctx.s["val_per_class"]), 120)


# --- 1. doctor -------------------------------------------------------------------------------
def step_doctor(ctx, step):
    p, _, _ = run(ctx, step, "doctor", dinov2(ctx, "doctor", "--json", "--path", ctx.work), 60, check=False)
    d = json.loads(p.stdout)
    ctx.doctor = d
    lt = d.get("libtorch") or {}
    f = step["figures"]
    f["libtorch"] = lt.get("version")
    f["libtorch_dir"] = lt.get("lib_dir")
    f["build_torch_version"] = d.get("build_torch_version")
    f["libtorch_cuda"] = d.get("libtorch_cuda")
    f["libraries"] = {l["name"]: l["path"] for l in d.get("libraries", [])}
    f["missing_libraries"] = d.get("missing_libraries")
    f["c10d_backends"] = d.get("c10d_backends")
    f["torch_cuda_devices"] = d.get("torch_cuda_devices")
    f["cudnn"] = d.get("cudnn")
    drv = d.get("cuda_driver", {})
    f["cuda_driver"] = drv.get("Ok", drv.get("Err"))
    f["cpu"] = d.get("cpu_model")
    f["cpus"] = d.get("cpus_available")
    f["simd"] = d.get("simd")
    f["problems"] = d.get("problems")
    judge(step, "doctor finds no problem", p.returncode == 0 and not d.get("problems"), d.get("problems"), "[]")
    judge(step, "libtorch release = the build's", (lt.get("version") or "").startswith(d.get("build_torch_version") or "?"),
          lt.get("version"), d.get("build_torch_version"))
    if not ctx.dry:
        judge(step, "libtorch sees the GPU", (d.get("torch_cuda_devices") or 0) >= 1, d.get("torch_cuda_devices"), ">= 1")
        judge(step, "cuDNN available", d.get("cudnn") is not None, d.get("cudnn"), "a version")
        judge(step, "c10d backends", d.get("c10d_backends") == ["gloo", "nccl"], d.get("c10d_backends"), "gloo, nccl")
    # what the system loader resolves for the binary, with this environment
    if shutil.which("ldd"):
        p, _, _ = run(ctx, step, "ldd", ["ldd", ctx.bin], 20, check=False)
        lines = [l.strip() for l in p.stdout.splitlines() if l.strip()]
        f["ldd"] = lines
        missing = [l for l in lines if "not found" in l]
        judge(step, "ldd: every dependency found", not missing, missing, "none missing")
    drv_ok = drv.get("Ok") or {}
    gpus = ", ".join(f"{g['name']} ({g['total_memory_bytes'] / 2**30:.0f} GiB, sm_{g['compute_capability'][0]}"
                     f"{g['compute_capability'][1]})" for g in drv_ok.get("devices", []))
    key(step, "libtorch loaded / built against", f"{lt.get('version')} from {lt.get('lib_dir')} / {d.get('build_torch_version')}")
    key(step, "GPU(s) as the driver sees them", gpus or f"none ({drv.get('Err')})")
    key(step, "cuDNN, c10d backends", f"{d.get('cudnn')}, {', '.join(d.get('c10d_backends') or [])}")
    f["binary_bytes"] = os.path.getsize(ctx.bin)
    judge(step, "binary size", f["binary_bytes"] < 48 << 20, f"{f['binary_bytes'] / 2**20:.1f} MiB", "< 48 MiB")


# --- 2. features -----------------------------------------------------------------------------
def step_features(ctx, step):
    ensure_tree(ctx, step)
    d = ctx.work / "features"
    shutil.rmtree(d, ignore_errors=True)
    ref = [ctx.python, ROOT / "bench/reference_features.py"]
    mk = [*ref, "make", "--tree", ctx.tree / "train", "--out", d, "--n", ctx.s["feat_n"], "--device", ctx.device]
    if not ctx.dry:
        mk.append("--fp16")
    p, _, _ = run(ctx, step, "features_reference", mk, 120)
    step["figures"]["reference"] = last_json(p.stdout)
    kinds = [("fp32", [])] + ([] if ctx.dry else [("fp16", ["--fp16"])])
    for kind, extra in kinds:
        ours = d / f"ours_{kind}.safetensors"
        run(ctx, step, f"features_{kind}", dinov2(ctx, "features", "--weights", d / "vits14.pth", "--input",
                                                  d / "images", "--out", ours, "--patch-tokens", "--device",
                                                  ctx.device, *extra), 120)
        p, _, _ = run(ctx, step, f"features_{kind}_compare",
                      [*ref, "compare", ours, d / f"reference_{kind}.safetensors"], 60)
        c = last_json(p.stdout)
        step["figures"][kind] = c
        key(step, f"features {kind} vs reference: max abs diff CLS / patch; max, mean rel error",
            f"{c['cls']['max_abs_diff']:.2e} / {c['patch']['max_abs_diff']:.2e}; "
            f"{max(c['cls']['max_rel_error'], c['patch']['max_rel_error']):.2e}, {c['patch']['mean_rel_error']:.2e}")
        if kind == "fp32":
            worst = max(c["cls"]["max_abs_diff"], c["patch"]["max_abs_diff"])
            judge(step, "fp32 (TF32 off): max |diff|, CLS and patch tokens", worst <= 1e-4, worst, "<= 1e-4")
        else:
            rel = max(c["cls"]["max_rel_error"], c["patch"]["max_rel_error"])
            judge(step, "fp16 autocast: max relative error", rel <= 5e-2, rel, "<= 5e-2 (fp16 rounding)")
            judge(step, "fp16 autocast: CLS cosine similarity", c["cls_cosine_min"] >= 0.999, c["cls_cosine_min"],
                  ">= 0.999")
    if not ctx.dry:
        # the reference's own fp16 error against its fp32, for scale
        p, _, _ = run(ctx, step, "features_reference_fp16_vs_fp32",
                      [*ref, "compare", d / "reference_fp16.safetensors", d / "reference_fp32.safetensors"], 60)
        c = last_json(p.stdout)
        step["figures"]["reference_fp16_vs_fp32"] = c
        key(step, "the reference's own fp16 vs its fp32: max, mean rel error",
            f"{max(c['cls']['max_rel_error'], c['patch']['max_rel_error']):.2e}, {c['patch']['mean_rel_error']:.2e}")


# --- 3. probe --------------------------------------------------------------------------------
def probe_args(ctx, out_dir):
    if ctx.dry:
        cfg = ROOT / "configs/tiny_lp_cpu.yaml"
        extra = ["-o", f"DataLoader.Train.loader.num_workers={ctx.s['workers']}"]
    else:
        cfg = ROOT / "configs/dinov2_vit_small_patch14_224_lp_in1k_1n8c_dp_fp16o1.yaml"
        w = ctx.s["workers"]
        extra = ["-o", "Global.pretrained_model=null", "-o", "DataLoader.Train.sampler.batch_size=64",
                 "-o", "DataLoader.Eval.sampler.batch_size=128", "-o", f"DataLoader.Train.loader.num_workers={w}",
                 "-o", f"DataLoader.Eval.loader.num_workers={w}", "-o", "Global.device=gpu"]
    return ["train", "-c", cfg, "-o", f"Global.output_dir={out_dir}", "-o", f"Global.epochs={ctx.s['probe_epochs']}",
            "-o", "Global.print_batch_step=5", "-o", "Model.class_num=10",
            "-o", f"DataLoader.Train.dataset.root={ctx.work / 'colours' / 'train'}",
            "-o", f"DataLoader.Eval.dataset.root={ctx.work / 'colours' / 'val'}", *extra]


def ensure_colour_tree(ctx, step):
    """A class-per-folder tree of 64 px PNGs whose 10 classes differ by colour (the class's
    colour, varied by up to 40 per channel, under a grey square of clutter): what a randomly initialised backbone's linear
    probe can learn. The generated ImageNet-like tree's classes differ only by structure, which
    such a backbone does not see. Written with Pillow, no download."""
    root = ctx.work / "colours"
    if (root / ".done").exists():
        return
    import random
    from PIL import Image
    rng = random.Random(0)
    n = {"train": ctx.s["per_class"], "val": ctx.s["val_per_class"]}
    for split, count in n.items():
        for c in range(10):
            d = root / split / f"c{c}"
            d.mkdir(parents=True, exist_ok=True)
            colour = [(c * 67) % 256, (c * 141) % 256, (c * 29 + 90) % 256]
            for i in range(count):
                ground = tuple(max(0, min(255, v + rng.randrange(-40, 41))) for v in colour)
                img = Image.new("RGB", (64, 64), ground)
                x, y, r = rng.randrange(0, 40), rng.randrange(0, 40), rng.randrange(8, 24)
                img.paste((rng.randrange(256),) * 3, (x, y, x + r, y + r))
                img.save(d / f"{i:04d}.png")
    (root / ".done").write_text("ok\n")
    step["commands"].append("(gpu_check.py: 10-class colour tree of 64 px PNGs)")


def step_probe(ctx, step):
    ensure_colour_tree(ctx, step)
    base = ctx.work / "probe"
    shutil.rmtree(base, ignore_errors=True)
    a_dir, b_dir = base / "uninterrupted", base / "resumed"
    run(ctx, step, "probe_uninterrupted", dinov2(ctx, *probe_args(ctx, a_dir)), 150)
    (run_a,) = [p for p in a_dir.iterdir() if p.is_dir()]
    recs = metrics(run_a / "metrics.jsonl")
    train = [r for r in recs if r.get("kind") == "train"]
    evals = [r for r in recs if r.get("kind") == "eval"]
    f = step["figures"]
    f["steps"] = train[-1]["step"]
    f["loss_first"], f["loss_last"] = train[0]["loss"], train[-1]["loss"]
    f["loss_scale"] = [r.get("loss_scale") for r in train][-1]
    f["skipped_steps"] = train[-1].get("skipped_steps")
    f["top1"], f["top5"] = evals[-1]["top1"], evals[-1]["top5"]
    f["train_images_per_s"] = statistics.median(r["train_images_per_s"] for r in evals)
    judge(step, "loss finite", all(math.isfinite(r["loss"]) for r in train), f["loss_last"], "finite")
    # falling: the mean logged loss of the second half of the run below that of the first half
    half = len(train) // 2
    early = statistics.mean(r["loss"] for r in train[: max(half, 1)])
    late = statistics.mean(r["loss"] for r in train[half:])
    f["loss_mean_first_half"], f["loss_mean_second_half"] = early, late
    judge(step, "loss falls", late < early, [early, late], "mean of the second half < of the first")
    if not ctx.dry:
        judge(step, "fp16 loss scaler active", f["loss_scale"] is not None, f["loss_scale"], "a scale")
    judge(step, "top-1 above chance", f["top1"] > 0.1, f["top1"], "> 0.10 (10 classes)")
    # stopped at a mid-run checkpoint (Global.max_train_step at an epoch's end), then --resume
    split = ctx.s["probe_split"]
    stop_at = next(r["step"] for r in evals if r["epoch"] == split)
    run(ctx, step, "probe_stopped", dinov2(ctx, *probe_args(ctx, b_dir), "-o", f"Global.max_train_step={stop_at}"), 150)
    run(ctx, step, "probe_resumed", dinov2(ctx, *probe_args(ctx, b_dir), "--resume"), 150)
    (run_b,) = [p for p in b_dir.iterdir() if p.is_dir()]
    last = f"epoch_{ctx.s['probe_epochs']}.safetensors"
    p, _, _ = run(ctx, step, "probe_compare", [ctx.python, ROOT / "bench/safetensors_diff.py",
                                               run_a / "checkpoints" / last, run_b / "checkpoints" / last], 60)
    c = last_json(p.stdout)
    evals_b = [r for r in metrics(run_b / "metrics.jsonl") if r.get("kind") == "eval"]
    f["resume"] = {"stopped_at_step": stop_at, "stopped_at_epoch": split, "head_max_abs_diff": c["max_abs_diff"],
                   "tensors": c["tensors"], "top1_uninterrupted": evals[-1]["top1"], "top1_resumed": evals_b[-1]["top1"],
                   "eval_loss_diff": abs(evals[-1]["loss"] - evals_b[-1]["loss"])}
    key(step, "probe: steps, loss first -> last, loss scale, skipped steps, top-1",
        f"{f['steps']}, {f['loss_first']:.3f} -> {f['loss_last']:.3f}, {f['loss_scale']}, {f['skipped_steps']}, "
        f"{f['top1'] * 100:.1f} %")
    key(step, "probe resumed at epoch %d vs uninterrupted: head max abs diff, eval loss diff" % split,
        f"{c['max_abs_diff']:.2e}, {f['resume']['eval_loss_diff']:.2e}")
    tol = 0.0 if ctx.dry else 1e-3
    judge(step, "resumed run ends where the uninterrupted one ends (head, max |diff|)",
          c["max_abs_diff"] <= tol, c["max_abs_diff"], "0 on the CPU; <= 1e-3 on a GPU")




# --- 4. pretrain -----------------------------------------------------------------------------
def pretrain_overrides(ctx, out_dir, batch, iters):
    if ctx.dry:
        cfg = ROOT / "configs/tiny_ssl_cpu.yaml"
        dev = ["-o", "train.device=cpu"]
    else:
        cfg = ROOT / "configs/dinov2_vits14_pretrain_in1k.yaml"
        dev = ["-o", "train.device=cuda", "-o", "compute_precision.grad_scaler=true"]
    return cfg, ["-o", f"train.dataset_path={ctx.tree}", "-o", f"train.output_dir={out_dir}",
                 "-o", f"train.batch_size_per_gpu={batch}", "-o", f"train.max_iterations={iters}",
                 "-o", f"train.num_workers={ctx.s['workers']}", "-o", "train.log_every=5", *dev]


def step_pretrain(ctx, step):
    ensure_tree(ctx, step)
    out = ctx.work / "pretrain"
    shutil.rmtree(out, ignore_errors=True)
    cfg, ov = pretrain_overrides(ctx, out, ctx.s["pre_batch"], ctx.s["pre_iters"])
    _, secs, mem = run(ctx, step, "pretrain", dinov2(ctx, "train", "-c", cfg, *ov), 180, gpu_memory=True)
    recs = [r for r in metrics(out / "metrics.jsonl") if r.get("kind") == "pretrain"]
    f = step["figures"]
    f["iterations"] = recs[-1]["iteration"]
    f["batch"] = ctx.s["pre_batch"]
    f["loss_first"], f["loss_last"] = recs[0]["total_loss"], recs[-1]["total_loss"]
    f["loss_scale"] = recs[-1].get("loss_scale")
    f["skipped_steps"] = recs[-1].get("skipped_steps")
    later = recs[1:] or recs
    f["images_per_s"] = statistics.median(r["images_per_s"] for r in later)
    f["step_s"] = statistics.median(r["step_s"] for r in later)
    f["peak_gpu_memory_mib"] = mem
    f["wall_s"] = secs
    judge(step, "no NaN or inf", all(math.isfinite(r["total_loss"]) for r in recs), f["loss_last"], "finite")
    if not ctx.dry:
        judge(step, "fp16 loss scaler active", f["loss_scale"] is not None, f["loss_scale"], "a scale")
    # bench train in the reference's fp16 + loss scaler, then in bf16 (no scaler): images/s and
    # where each step's time goes (every phase synchronised: a profiling run)
    fmt_bd = lambda bd: ", ".join(f"{k[:-2]} {1e3 * v:.1f}" for k, v in bd.items())
    for prec, extra in (("fp16", []), ("bf16", ["-o", "compute_precision.autocast_dtype=bf16",
                                                "-o", "compute_precision.grad_scaler=false"])):
        if ctx.dry and prec == "bf16":
            extra = ["-o", "compute_precision.autocast_dtype=bf16"]
        bench = ctx.work / f"bench-train-{prec}"
        cfg, ov = pretrain_overrides(ctx, ctx.work / "bench-train-run", ctx.s["pre_batch"], ctx.s["pre_iters"])
        run(ctx, step, f"bench_train_{prec}", dinov2(ctx, "bench", "train", "-c", cfg, *ov, *extra, "--iterations",
                                                     ctx.s["bench_iters"], "--workdir", bench), 150)
        b = json.loads((bench / "results.json").read_text())
        f[f"bench_train_{prec}"] = {k: b.get(k) for k in ("data_images_per_s", "premade_step_images_per_s",
                                                          "step_images_per_s", "fed_vs_premade", "breakdown_fed",
                                                          "bound")}
        if prec == "fp16":
            f["bench_train"] = f["bench_train_fp16"]
            ctx.ours_step = b
        key(step, f"bench train ({prec}) images/s: pipeline alone / step on a pre-made batch / step fed by the pipeline",
            f"{b['data_images_per_s']:.1f} / {b['premade_step_images_per_s']:.1f} / {b['step_images_per_s']:.1f} "
            f"(fed / pre-made {b['fed_vs_premade']:.3f})")
        key(step, f"bench train ({prec}) step breakdown, ms (fed by the pipeline)",
            f"{fmt_bd(b['breakdown_fed'])} ({b['bound']})")
        if not ctx.dry:
            judge(step, f"{prec}: step fed by the pipeline vs on a pre-made batch", b["fed_vs_premade"] >= 0.95,
                  b["fed_vs_premade"], ">= 0.95 (the GPU never waits for data)")
    # the training run's own breakdown (on CUDA one step in log_every is synchronised per phase)
    bd = [r for r in later if "fwd_bwd_s" in r]
    if bd:
        f["train_breakdown"] = {k: statistics.median(r[k] for r in bd) for k in
                                ("data_wait_s", "h2d_s", "fwd_bwd_s", "allreduce_exposed_s", "optimizer_s", "ema_s",
                                 "logging_s")}
    key(step, f"pretraining, batch {f['batch']}: images/s, step s, loss scale, skipped, peak GPU MiB",
        f"{f['images_per_s']:.1f}, {f['step_s']:.3f}, {f['loss_scale']}, {f['skipped_steps']}, {mem}")


# --- 5. reference ----------------------------------------------------------------------------
def step_reference(ctx, step):
    ensure_tree(ctx, step)
    cfg = ROOT / ("configs/tiny_ssl_cpu.yaml" if ctx.dry else "configs/dinov2_vits14_pretrain_in1k.yaml")
    cmd = [ctx.python, ROOT / "bench/reference_ssl_step.py", "--config", cfg, "--data", ctx.tree / "train",
           "--batch", ctx.s["pre_batch"], "--iters", ctx.s["ref_iters"], "--device", ctx.device]
    if ctx.dry:
        cmd += ["--threads", str(ctx.s["workers"])]
    else:
        cmd.append("--fp16")
    p, _, mem = run(ctx, step, "reference_step", cmd, 150, gpu_memory=True)
    r = last_json(p.stdout)
    f = step["figures"]
    f["reference"] = {k: r[k] for k in ("impl", "batch", "images_per_s", "step_s", "loss_first", "loss_last",
                                        "loss_scale", "max_memory_allocated_bytes", "max_memory_reserved_bytes",
                                        "torch", "device_name")}
    f["reference"]["peak_gpu_memory_mib"] = mem
    ours = getattr(ctx, "ours_step", None)
    if ours:
        f["ours_premade_images_per_s"] = ours["premade_step_images_per_s"]
        f["ours_fed_images_per_s"] = ours["step_images_per_s"]
        f["ours_vs_reference"] = ours["premade_step_images_per_s"] / r["images_per_s"]
        pre = ctx.results["steps"].get("pretrain", {}).get("figures", {})
        f["ours_peak_gpu_memory_mib"] = pre.get("peak_gpu_memory_mib")
        if not ctx.dry:
            judge(step, "our step / the reference's step (images/s, same batch)", f["ours_vs_reference"] >= 1.0,
                  f["ours_vs_reference"], ">= 1.0")
    key(step, "reference step images/s, peak GPU MiB (nvidia-smi), max allocated MiB",
        f"{r['images_per_s']:.1f}, {mem}, "
        f"{(r['max_memory_allocated_bytes'] or 0) / 2**20:.0f}")
    if ours:
        key(step, "ours (pre-made batch) / reference images/s", f"{f['ours_vs_reference']:.3f}")
    judge(step, "reference loss finite", math.isfinite(r["loss_last"]), r["loss_last"], "finite")


# --- 6. model --------------------------------------------------------------------------------
def step_model(ctx, step):
    rows = {}
    for batch in ctx.s["model_batches"]:
        wd = ctx.work / f"bench-model-{batch}"
        cmd = dinov2(ctx, "bench", "model", "--device", ctx.device, "--batch", batch, "--size", ctx.s["model_size"],
                     "--reps", ctx.s["model_reps"], "--workdir", wd, "--python", ctx.python)
        if not ctx.dry:
            cmd.append("--fp16")
        else:
            cmd += ["--threads", ctx.s["workers"]]
        run(ctx, step, f"bench_model_{batch}", cmd, 120)
        res = json.loads((wd / "results.json").read_text())
        rows[batch] = [{k: r[k] for k in ("name", "forward_ms", "forward_backward_ms")} for r in res["rows"]]
        ours = res["rows"][0]
        key(step, f"bench model batch {batch}: fwd+bwd ms " + " / ".join(r["name"] for r in res["rows"]),
            " / ".join(f"{r['forward_backward_ms']:.1f}" for r in res["rows"]))
        for r in res["rows"][1:]:
            r_ = r["forward_backward_ms"] / ours["forward_backward_ms"]
            step["checks"].append({"check": f"batch {batch}: ours vs {r['name']} (fwd+bwd speed ratio)",
                                   "ok": True, "value": r_, "target": "reported"})
    step["figures"]["rows"] = rows


# --- 7. nccl ---------------------------------------------------------------------------------
def step_nccl(ctx, step):
    ensure_tree(ctx, step)
    out = ctx.work / "nccl"
    shutil.rmtree(out, ignore_errors=True)
    batch = 4 if ctx.dry else 64
    cfg, ov = pretrain_overrides(ctx, out, batch, ctx.s["nccl_iters"])
    run(ctx, step, "launch_1", dinov2(ctx, "launch", "--nproc-per-node", 1, "--", "train", "-c", cfg, *ov), 150)
    recs = [r for r in metrics(out / "metrics.jsonl") if r.get("kind") == "pretrain"]
    f = step["figures"]
    f["backend"] = recs[-1].get("backend")
    f["world_size"] = recs[-1].get("world_size")
    f["comm_s_per_step"] = statistics.median(r["comm_s"] for r in recs)
    f["step_s"] = statistics.median(r["step_s"] for r in recs)
    f["note"] = "one GPU allows a world of one: every collective runs (gradient buckets, centres), through NCCL"
    key(step, "one-process launch: backend, all-reduce s per step, step s",
        f"{f['backend']}, {f['comm_s_per_step']:.4f}, {f['step_s']:.3f}")
    want = "gloo" if ctx.dry else "nccl"
    judge(step, "process group backend", f["backend"] == want, f["backend"], want)
    judge(step, "loss finite", all(math.isfinite(r["total_loss"]) for r in recs), recs[-1]["total_loss"], "finite")


# --- 8. data ---------------------------------------------------------------------------------
def step_data(ctx, step):
    ensure_tree(ctx, step)
    rows = []
    workers = ctx.s["data_workers"]
    for w in workers:
        cmd = dinov2(ctx, "bench", "data", "--data", ctx.tree, "--preset", "dinov2", "--workers", w,
                     "--seconds", ctx.s["data_secs"], "--batch", ctx.s["data_batch"], "--json",
                     "--workdir", ctx.work / "bench-data", "--python", ctx.python)
        if w == workers[-1]:
            cmd.append("--compare")
        p, _, _ = run(ctx, step, f"bench_data_{w}", cmd, 90)
        r = json.loads(p.stdout)
        rows.append({k: r[k] for k in ("workers", "images_per_s", "crops_per_s", "cpu_utilisation", "stages",
                                       "torchvision_images_per_s", "speedup_vs_torchvision")})
    step["figures"]["rows"] = rows
    simd = getattr(ctx, "doctor", {}).get("simd", {})
    step["figures"]["cpu_features"] = simd.get("cpu_features")
    step["figures"]["kernels"] = {k: v for k, v in simd.items() if k != "cpu_features"}
    step["figures"]["avx512"] = "avx512f" in (simd.get("cpu_features") or [])
    key(step, "bench data dinov2 preset images/s at " + ", ".join(str(r["workers"]) for r in rows) + " workers",
        ", ".join(f"{r['images_per_s']:.0f}" for r in rows))
    x = rows[-1]["speedup_vs_torchvision"]
    if x:
        key(step, f"vs torchvision's DataLoader at {workers[-1]} workers",
            f"{rows[-1]['torchvision_images_per_s']:.0f} images/s -> {x:.2f}x")
    key(step, "AVX-512; augment kernels", f"{step['figures']['avx512']}; {', '.join(simd.get('augment_kernels') or [])}")
    judge(step, f"vs torchvision's DataLoader at {workers[-1]} workers", x is not None and x > 1.0, x, "> 1.0x")


# --- 9. learning -----------------------------------------------------------------------------
def step_learning(ctx, step):
    env = {"DINOV2_BIN": ctx.bin, "DINOV2_PYTHON": ctx.python, "LEARNING_CHECK_DIR": str(ctx.work / "learning")}
    cmd = ["bash", ROOT / "scripts/learning_check.sh"]
    if ctx.dry:
        env["LEARNING_CHECK_PROBE_EPOCHS"] = "1"
        cmd += ["train.max_iterations=10", f"train.num_workers={ctx.s['workers']}"]
    else:
        cmd += ["train.device=cuda", "compute_precision.grad_scaler=true", f"train.num_workers={ctx.s['workers']}"]
    line = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k.startswith("LEARNING"))
    p, secs, _ = run(ctx, step, "learning_check", cmd, 200, env=env, check=False)
    step["commands"][-1] = (line + " " + step["commands"][-1]).strip()
    r = last_json(p.stdout)
    step["figures"].update(r, wall_s=secs)
    key(step, "digits learning check: k-NN k=20 pretrained vs random; entropy per image / batch-mean (ln K)",
        f"{r['knn_pretrained'].get('20', 0) * 100:.1f} % vs {r['knn_random'].get('20', 0) * 100:.1f} %; "
        f"{r['teacher_entropy']:.3f} / {r['teacher_marginal_entropy']:.3f} ({r['ln_k']:.3f})")
    if ctx.dry:
        judge(step, "the learning check ran to its verdict (not judged at 10 iterations)", True, r["passed"], "ran")
    else:
        judge(step, "k-NN (k=20) beats the random backbone by 10 points, targets not collapsed", r["passed"],
              r["failed"] or [r["knn_pretrained"], r["knn_random"]], "passed")


# --- 10. demo --------------------------------------------------------------------------------
def step_demo(ctx, step):
    out = ctx.work / "demo"
    args = ["demo", "--out", out]
    if ctx.dry:
        args += ["--images", 60, "--iterations", 4, "--probe-epochs", 1, "--bench-seconds", 0.5,
                 "--size", 64, "--reps", 2]
    p, secs, mem = run(ctx, step, "demo", dinov2(ctx, *args), 240, gpu_memory=True)
    s = json.loads((out / "summary.json").read_text())
    probes = {pr["backbone"]: pr for pr in s["probes"]}

    def knn20(pr):
        return max((k["top1"] for k in pr["knn"] if k["k"] == 20), default=0.0)

    linear_gap = 100 * (probes["pretrained"]["best_top1"] - probes["random"]["best_top1"])
    knn_gap = 100 * (knn20(probes["pretrained"]) - knn20(probes["random"]))
    opening = p.stdout.split("## What this run shows", 1)[-1].split("\n## ", 1)[0]
    numbered = [line for line in opening.splitlines() if line[:3] in ("1. ", "2. ", "3. ")]
    step["figures"].update(wall_s=secs, device=s["device"], linear_gain_points=linear_gap,
                           knn20_gain_points=knn_gap, pretrain_images_per_s=s["pretraining"]["images_per_s"],
                           baselines=s["baselines"], peak_gpu_mib=mem, opening=numbered)
    key(step, "demo: trained on; linear / k-NN k=20 gain over random initialisation; wall",
        f"{s['device']['kind']} ({s['device']['precision']}); {linear_gap:+.1f} / {knn_gap:+.1f} points; {secs:.0f} s")
    judge(step, "the summary opens with the three comparisons, each with its baseline measured",
          len(numbered) == 3 and "not measured" not in opening, numbered, "3 comparisons")
    if ctx.dry:
        judge(step, "the dry run trains on the CPU", s["device"]["kind"] == "cpu", s["device"]["kind"], "cpu")
    else:
        judge(step, "the demo trains on the GPU in fp16", s["device"]["kind"] == "cuda"
              and "fp16" in s["device"]["precision"], s["device"], "cuda, fp16")
        judge(step, "pretrained beats random by >= 15 points, linear probe and k-NN k=20",
              linear_gap >= 15 and knn_gap >= 15, [round(linear_gap, 1), round(knn_gap, 1)], ">= 15 each")


# --- report ----------------------------------------------------------------------------------
def machine(ctx):
    m = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "mode": "dry-run (CPU)" if ctx.dry else "GPU",
         "host_cpus": ctx.cores, "binary": ctx.bin, "python": ctx.python}
    if shutil.which("nvidia-smi"):
        p = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True)
        m["gpu"] = p.stdout.strip() or p.stderr.strip()
    p = subprocess.run([ctx.python, "-c", "import torch; print(torch.__version__, torch.version.cuda, "
                        "torch.backends.cudnn.version())"], capture_output=True, text=True)
    m["python_torch"] = p.stdout.strip() or p.stderr.strip()[-200:]
    return m


def fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        s = json.dumps(v)
        return s if len(s) < 160 else s[:157] + "..."
    return str(v)


def write_report(ctx):
    r = ctx.results
    r["total_seconds"] = round(time.time() - ctx.t0, 1)
    tmp = ctx.out / "gpu_check.json.tmp"
    tmp.write_text(json.dumps(r, indent=2, default=str))
    tmp.replace(ctx.out / "gpu_check.json")
    m = r["machine"]
    lines = [f"# dinov2-rs GPU check ({m['mode']})", "",
             f"- date: {m['date']}", f"- GPU: {m.get('gpu', 'none')}",
             f"- PyTorch of this machine: {m['python_torch']}", f"- host CPUs: {m['host_cpus']}",
             f"- total: {r['total_seconds']} s of a {r['budget_s']} s budget", ""]
    lines += ["| step | verdict | seconds |", "|---|---|---:|"]
    for name, what, _, _ in STEPS:
        s = r["steps"].get(name)
        if s:
            lines.append(f"| {name}: {what} | {s['status']} | {s.get('seconds', '')} |")
    lines += ["", "Key figures:", "", "| figure | value |", "|---|---|"]
    for name, _, _, _ in STEPS:
        for label, value in r["steps"].get(name, {}).get("key_figures", []):
            lines.append(f"| {label} | {value} |")
    for name, what, _, _ in STEPS:
        s = r["steps"].get(name)
        if not s:
            continue
        lines += ["", f"## {name}: {what}", "", f"**{s['status']}**" + (f": {s['error']}" if s.get("error") else ""), ""]
        if s["checks"]:
            lines += ["| check | ok | value | target |", "|---|---|---|---|"]
            lines += [f"| {c['check']} | {'yes' if c['ok'] else 'NO'} | {fmt(c['value'])} | {c['target']} |"
                      for c in s["checks"]]
            lines.append("")
        if s["figures"]:
            lines += ["Figures:", "", "```json", json.dumps(s["figures"], indent=1, default=str), "```", ""]
        if s["commands"]:
            lines += ["Commands:", "", "```"] + s["commands"] + ["```"]
    tmp = ctx.out / "gpu_check.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(ctx.out / "gpu_check.md")


def pack_logs(ctx):
    tmp = ctx.out / "logs.tar.gz.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(ctx.logs, arcname="logs")
    tmp.replace(ctx.out / "logs.tar.gz")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--bin", default=str(ROOT / "target/release/dinov2"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--workdir", help="scratch space (default OUT/work)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (CI)")
    ap.add_argument("--budget", type=float, default=400.0, help="seconds for all steps")
    ap.add_argument("--only", help="comma-separated step names")
    a = ap.parse_args()
    ctx = Ctx(a)
    for d in (ctx.out, ctx.logs, ctx.work):
        d.mkdir(parents=True, exist_ok=True)
    ctx.results.update({"machine": machine(ctx), "budget_s": a.budget, "sizes": ctx.s})
    only = set(a.only.split(",")) if a.only else None
    failed = []
    for name, what, min_s, cap in STEPS:
        if only and name not in only:
            continue
        step = {"what": what, "status": "running", "checks": [], "figures": {}, "commands": []}
        ctx.results["steps"][name] = step
        t = time.time()
        if ctx.left() < (1 if ctx.dry else min_s):
            step["status"] = "skipped"
            step["error"] = f"{ctx.left():.0f} s left of the budget"
        else:
            print(f"[gpu_check] {name}: {what} ...", file=sys.stderr, flush=True)
            try:
                globals()[f"step_{name}"](ctx, step)
                step["status"] = "pass" if all(c["ok"] for c in step["checks"]) else "FAIL"
            except StepFailed as e:
                step["status"], step["error"] = "FAIL", str(e)
            except Exception as e:  # a bug of this script or an unexpected output: keep going
                step["status"], step["error"] = "ERROR", f"{type(e).__name__}: {e}"
        step["seconds"] = round(time.time() - t, 1)
        print(f"[gpu_check] {name}: {step['status']} ({step['seconds']} s)"
              + (f" {step.get('error')}" if step.get("error") else ""), file=sys.stderr, flush=True)
        if step["status"] not in ("pass",):
            failed.append(name)
        write_report(ctx)
        pack_logs(ctx)
    print((ctx.out / "gpu_check.md").read_text())
    print(f"[gpu_check] {'all steps passed' if not failed else 'not passed: ' + ', '.join(failed)}", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
