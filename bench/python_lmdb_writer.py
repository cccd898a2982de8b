#!/usr/bin/env python3
"""Baseline for `dinov2 bench convert`: the straightforward python-lmdb ImageNet writer.

Walks a class-per-subfolder tree like torchvision's ImageFolder (sorted classes, sorted files),
reads each image, gets its size with PIL, and stores pickle((key, label, width, height, bytes))
in one LMDB, committing every 1000 records: the shape of the usual `folder2lmdb.py` scripts.

  --validate header   PIL reads only the header for the size (no pixel decode)
  --validate decode   PIL decodes every image to RGB (img.convert("RGB")), which is what it
                      takes to catch truncated files; the fair match for dinov2's converter,
                      which decode-checks every JPEG

Prints one JSON line: {"images": N, "seconds": S, "images_per_s": R, "bytes": B}.
"""
import argparse
import json
import os
import pickle
import time

import lmdb
from PIL import Image

EXTS = (".jpg", ".jpeg", ".png")


def scan(root):
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
    items = []
    for label, c in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(os.path.join(root, c), followlinks=True)):
            for f in sorted(files):
                if f.lower().endswith(EXTS):
                    items.append((os.path.join(dirpath, f), label))
    return items


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--validate", choices=["header", "decode"], default="header")
    args = ap.parse_args()

    t0 = time.perf_counter()
    items = scan(args.root)
    env = lmdb.open(args.out, subdir=False, map_size=1 << 40, readonly=False, meminit=False, map_async=True)
    txn = env.begin(write=True)
    nbytes = 0
    stored = 0
    for i, (path, label) in enumerate(items):
        try:
            with open(path, "rb") as f:
                data = f.read()
            with Image.open(path) as img:
                if args.validate == "decode":
                    img = img.convert("RGB")
                w, h = img.size
        except Exception:  # skip bad files, as the converter does by default
            continue
        key = os.path.relpath(path, args.root)
        txn.put(b"%010d" % stored, pickle.dumps((key, label, w, h, data), protocol=pickle.HIGHEST_PROTOCOL))
        stored += 1
        nbytes += len(data)
        if stored % 1000 == 0:
            txn.commit()
            txn = env.begin(write=True)
    txn.put(b"__len__", str(stored).encode())
    txn.commit()
    env.sync(True)
    env.close()
    secs = time.perf_counter() - t0
    print(json.dumps({"images": stored, "seconds": secs, "images_per_s": stored / secs, "bytes": nbytes}))


if __name__ == "__main__":
    main()
