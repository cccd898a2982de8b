"""Reference side of tests/loss_parity.rs.

usage: loss_reference.py OUT_DIR
Runs the `dinov2` package's own DINOLoss, iBOTPatchLoss and KoLeoLoss (dinov2/loss/*, in a
one-process gloo group as in training: iBOT's Sinkhorn-Knopp all-reduces unconditionally) on
seeded random prototype scores (K = 300, B = 6 images, 2 global + 3 local crops) and writes
OUT/loss.safetensors with the inputs, outputs and student gradients:
- dino_c{k}_* (k = 1..3): three consecutive centering steps as SSLMetaArch runs them
  (softmax_center_teacher, view [2, B, K], update_center; local loss over the 3 local chunks,
  global loss on the flattened teacher), with the centre used at each step, then
  dino_center_final after one more apply_center_update;
- dino_sk_*: Sinkhorn-Knopp teacher and the same two losses;
- ibot_c{k}_*: three centering steps on the masked tokens of a real mask layout
  (collate_data_and_cast with MaskingGenerator on a 6x6 patch grid, 12 global crops) with
  forward_masked(n_masked_patches, masks_weight) and with its defaults; ibot_sk_*: SK;
- koleo_*: KoLeo on random CLS tokens, and on tokens with a duplicated row (fp32; its fp16
  value, inf through the reference's underflow, is written as koleo_dup_fp16).
"""
import random, sys, tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from dinov2.data.collate import collate_data_and_cast
from dinov2.data.masking import MaskingGenerator
from dinov2.loss import DINOLoss, KoLeoLoss, iBOTPatchLoss

out = Path(sys.argv[1])
torch.set_num_threads(2)
dist.init_process_group("gloo", init_method=f"file://{tempfile.mktemp()}", rank=0, world_size=1)
torch.manual_seed(0)
random.seed(0)

K, B, NG, NL, GRID = 300, 6, 2, 3, 6
t = {}


def scalar(x):
    return x.detach().reshape(1).clone()


def logits(n, bias):
    # Per-prototype offsets so that the centre matters.
    return torch.randn(n, K) * 0.6 + bias


# --- DINO, centering over 3 consecutive steps
dino = DINOLoss(K)
bias = torch.randn(K) * 0.8
for k, temp in enumerate([0.04, 0.055, 0.07], 1):
    teacher = logits(NG * B, bias)
    s_g = logits(NG * B, bias * 0.5).requires_grad_()
    s_l = logits(NL * B, bias * 0.5).requires_grad_()
    p = dino.softmax_center_teacher(teacher, teacher_temp=temp).view(NG, -1, K)
    t[f"dino_c{k}_center"] = dino.center.clone()
    dino.update_center(teacher)
    local = dino(s_l.chunk(NL), p)
    glob = dino([s_g], [p.flatten(0, 1)])
    (local + glob).backward()
    t.update({
        f"dino_c{k}_teacher": teacher, f"dino_c{k}_temp": torch.tensor([temp], dtype=torch.float64),
        f"dino_c{k}_s_g": s_g.detach(), f"dino_c{k}_s_l": s_l.detach(), f"dino_c{k}_p": p,
        f"dino_c{k}_local": scalar(local), f"dino_c{k}_global": scalar(glob),
        f"dino_c{k}_grad_g": s_g.grad, f"dino_c{k}_grad_l": s_l.grad,
    })
dino.apply_center_update()
t["dino_center_final"] = dino.center.clone()

# --- DINO, Sinkhorn-Knopp
teacher = logits(NG * B, bias)
s_g = logits(NG * B, bias * 0.5).requires_grad_()
s_l = logits(NL * B, bias * 0.5).requires_grad_()
p = DINOLoss(K).sinkhorn_knopp_teacher(teacher, teacher_temp=0.06).view(NG, -1, K)
local = dino(s_l.chunk(NL), p)
glob = dino([s_g], [p.flatten(0, 1)])
(local + glob).backward()
t.update({
    "dino_sk_teacher": teacher, "dino_sk_s_g": s_g.detach(), "dino_sk_s_l": s_l.detach(), "dino_sk_p": p,
    "dino_sk_local": scalar(local), "dino_sk_global": scalar(glob),
    "dino_sk_grad_g": s_g.grad, "dino_sk_grad_l": s_l.grad,
})


# --- iBOT on a real mask layout
gen = MaskingGenerator(input_size=(GRID, GRID), max_num_patches=0.5 * GRID * GRID)
samples = [({"global_crops": [torch.zeros(1)] * NG, "local_crops": [torch.zeros(1)] * NL}, None)] * B


def collate():
    c = collate_data_and_cast(samples, (0.1, 0.5), 0.5, torch.float, n_tokens=GRID * GRID, mask_generator=gen)
    return c["collated_masks"], c["masks_weight"], c["n_masked_patches"]


ibot = iBOTPatchLoss(K)
pbias = torch.randn(K) * 0.8
for k, temp in enumerate([0.04, 0.055, 0.07], 1):
    masks, weight, n_tensor = collate()
    n = int(n_tensor.item())
    teacher = logits(n, pbias)
    s = logits(n, pbias * 0.5).requires_grad_()
    teacher3 = teacher.unsqueeze(0)
    p = ibot.softmax_center_teacher(teacher3[:, :n], teacher_temp=temp).squeeze(0)
    t[f"ibot_c{k}_center"] = ibot.center.clone()
    ibot.update_center(teacher3[:n])
    loss = ibot.forward_masked(s, p, student_masks_flat=masks, n_masked_patches=n, masks_weight=weight)
    loss.backward()
    default = ibot.forward_masked(s, p, student_masks_flat=masks)
    t.update({
        f"ibot_c{k}_masks": masks.to(torch.uint8), f"ibot_c{k}_weight": weight,
        f"ibot_c{k}_temp": torch.tensor([temp], dtype=torch.float64),
        f"ibot_c{k}_teacher": teacher, f"ibot_c{k}_s": s.detach(), f"ibot_c{k}_p": p,
        f"ibot_c{k}_loss": scalar(loss), f"ibot_c{k}_default": scalar(default), f"ibot_c{k}_grad": s.grad,
    })
ibot.apply_center_update()
t["ibot_center_final"] = ibot.center.clone()

masks, weight, n_tensor = collate()
n = int(n_tensor.item())
teacher = logits(n, pbias)
s = logits(n, pbias * 0.5).requires_grad_()
p = iBOTPatchLoss(K).sinkhorn_knopp_teacher(teacher, teacher_temp=0.06, n_masked_patches_tensor=n_tensor.clone())
loss = ibot.forward_masked(s, p, student_masks_flat=masks, n_masked_patches=n, masks_weight=weight)
loss.backward()
t.update({
    "ibot_sk_masks": masks.to(torch.uint8), "ibot_sk_weight": weight, "ibot_sk_teacher": teacher,
    "ibot_sk_s": s.detach(), "ibot_sk_p": p, "ibot_sk_loss": scalar(loss), "ibot_sk_grad": s.grad,
})

# --- KoLeo
koleo = KoLeoLoss()
x = torch.randn(B, 64).requires_grad_()
loss = koleo(x)
loss.backward()
t.update({"koleo_x": x.detach(), "koleo_loss": scalar(loss), "koleo_grad": x.grad})
x_dup = x.detach().clone()
x_dup[3] = x_dup[1]
t["koleo_dup_x"] = x_dup
t["koleo_dup_loss"] = scalar(koleo(x_dup))
with torch.no_grad():
    try:
        t["koleo_dup_fp16"] = scalar(koleo(x_dup.half()).float())
    except RuntimeError:  # fp16 op missing on this device
        pass

save_file({k: v.detach().contiguous() for k, v in t.items()}, out / "loss.safetensors")
dist.destroy_process_group()
print("ok")
