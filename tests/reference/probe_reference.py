"""Reference side of tests/probe_parity.rs.

usage: probe_reference.py OUT_DIR
Writes OUT/probe.safetensors with:
- sgd_*: a Linear(2D, C) probe head (weight ~ N(0, 0.01), bias 0 as dinov2's
  LinearClassifier), features and labels, and the head after each of 3 steps of
  torch.optim.SGD(lr, momentum=0.9, weight_decay) on F.cross_entropy (the second and third
  steps exercise the momentum buffer; step 3 uses another learning rate, as a schedule does);
- timm_cosine / timm_cosine_warmup: timm's CosineLRScheduler (PASSL's TimmCosine) per epoch;
- annealing: torch's CosineAnnealingLR stepped per iteration (dinov2's linear eval);
- knn_*: train/query features and labels and dinov2's KnnModule class probabilities for
  k in (1, 3, 10) at T = 0.07 (a one-process gloo group, as the module needs one).
"""
import sys, tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

out = Path(sys.argv[1])
torch.manual_seed(0)
t = {}

# --- SGD with momentum on the probe head
D2, C, N = 96, 10, 32
x = torch.randn(N, D2)
y = torch.randint(0, C, (N,))
head = torch.nn.Linear(D2, C)
head.weight.data.normal_(0, 0.01)
head.bias.data.zero_()
t["sgd_features"], t["sgd_labels"] = x, y
t["sgd_w0"], t["sgd_b0"] = head.weight.detach().clone(), head.bias.detach().clone()
opt = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
for step, lr in enumerate([0.1, 0.1, 0.05], 1):
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad()
    loss = F.cross_entropy(head(x), y)
    loss.backward()
    opt.step()
    t[f"sgd_w{step}"], t[f"sgd_b{step}"] = head.weight.detach().clone(), head.bias.detach().clone()
    t[f"sgd_loss{step}"] = loss.detach().reshape(1)

# --- schedules
from timm.scheduler import CosineLRScheduler


def timm_lrs(**kw):
    p = torch.nn.Parameter(torch.zeros(1))
    o = torch.optim.SGD([p], lr=0.01)
    s = CosineLRScheduler(o, t_initial=10, **kw)
    lrs = []
    for e in range(12):
        s.step(e)
        lrs.append(o.param_groups[0]["lr"])
    return torch.tensor(lrs, dtype=torch.float64)


t["timm_cosine"] = timm_lrs(lr_min=0.0)
t["timm_cosine_warmup"] = timm_lrs(lr_min=1e-5, warmup_t=3, warmup_lr_init=1e-4)
p = torch.nn.Parameter(torch.zeros(1))
o = torch.optim.SGD([p], lr=0.02)
sch = torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=50, eta_min=0)
lrs = []
for _ in range(50):
    lrs.append(o.param_groups[0]["lr"])
    o.step()
    sch.step()
t["annealing"] = torch.tensor(lrs, dtype=torch.float64)

# --- k-NN
import torch.distributed as dist

dist.init_process_group("gloo", init_method=f"file://{tempfile.mktemp()}", rank=0, world_size=1)
# dinov2/eval/knn.py imports its training stack (fvcore, ...) at the top: take the class
# from the package's source and give it the names it uses.
import ast
import dinov2.distributed as distributed
import dinov2.eval as ev
from torch.nn.functional import one_hot, softmax

src = (Path(ev.__file__).parent / "knn.py").read_text()
node = next(n for n in ast.parse(src).body if isinstance(n, ast.ClassDef) and n.name == "KnnModule")
scope = {"torch": torch, "distributed": distributed, "softmax": softmax, "one_hot": one_hot}
exec(ast.get_source_segment(src, node), scope)
KnnModule = scope["KnnModule"]

train = F.normalize(torch.randn(200, 16), dim=1)
train_labels = torch.randint(0, 7, (200,))
query = F.normalize(torch.randn(40, 16), dim=1)
query_labels = torch.randint(0, 7, (40,))
m = KnnModule(train, train_labels, nb_knn=[1, 3, 10], T=0.07, device=torch.device("cpu"), num_classes=7)
probs = m(query)
t.update({"knn_train": train, "knn_train_labels": train_labels, "knn_query": query,
          "knn_query_labels": query_labels})
for k, v in probs.items():
    t[f"knn_probs_{k}"] = v
dist.destroy_process_group()
save_file({k: v.contiguous() for k, v in t.items()}, out / "probe.safetensors")
print("ok")
