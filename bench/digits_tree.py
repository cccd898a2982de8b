"""Writes scikit-learn's digits (1797 8x8 grey images of 0-9, shipped inside the package:
nothing is downloaded) as a class-per-folder PNG tree for the pretraining learning check:
OUT/train/<digit>/NNNN.png and OUT/val/<digit>/NNNN.png, upscaled to SIZE px (bicubic), RGB.
A fixed random split: 1497 train, 300 val.

usage: digits_tree.py OUT [SIZE]
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

out = Path(sys.argv[1])
size = int(sys.argv[2]) if len(sys.argv) > 2 else 32
d = load_digits()
order = np.random.RandomState(0).permutation(len(d.images))
val = set(order[:300].tolist())
for i, (img, label) in enumerate(zip(d.images, d.target)):
    split = "val" if i in val else "train"
    p = out / split / str(label)
    p.mkdir(parents=True, exist_ok=True)
    px = (img * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    Image.fromarray(px, "L").resize((size, size), Image.BICUBIC).convert("RGB").save(p / f"{i:04d}.png")
print(f"{len(d.images)} digits -> {out} ({size} px)")
