#!/usr/bin/env python3
"""Baseline for `dinov2 bench data --compare`: torchvision's DataLoader on the same images.

ImageFolder + the reference transforms, num_workers = --workers, shuffled, drop_last:
  dinov2        dinov2's own DataAugmentationDINO (2 global 224 + 8 local 98 crops) and its
                collate_data_and_cast with the iBOT MaskingGenerator (the training data path
                of dinov2/train/train.py)
  linear-train  RandomResizedCrop(224, BICUBIC) + RandomHorizontalFlip + ToTensor + Normalize
  linear-eval   Resize(256, BICUBIC) + CenterCrop(224) + ToTensor + Normalize

Runs for --seconds after the first batch and prints one JSON line with images/s.
"""
import argparse
import json
import time
from functools import partial

import torch
from torchvision import datasets, transforms
from torchvision.transforms import InterpolationMode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--preset", choices=["dinov2", "linear-train", "linear-eval"], required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)

    normalize = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    collate = None
    if args.preset == "dinov2":
        from dinov2.data.augmentations import DataAugmentationDINO
        from dinov2.data.collate import collate_data_and_cast
        from dinov2.data.masking import MaskingGenerator

        tf = DataAugmentationDINO((0.32, 1.0), (0.05, 0.32), 8, global_crops_size=224, local_crops_size=98)
        mask_gen = MaskingGenerator(input_size=(16, 16), max_num_patches=0.5 * 16 * 16)
        collate = partial(collate_data_and_cast, mask_ratio_tuple=(0.1, 0.5), mask_probability=0.5,
                          n_tokens=256, mask_generator=mask_gen, dtype=torch.half)
        crops = 10
    elif args.preset == "linear-train":
        tf = transforms.Compose([transforms.RandomResizedCrop(224, interpolation=InterpolationMode.BICUBIC),
                                 transforms.RandomHorizontalFlip(), normalize])
        crops = 1
    else:
        tf = transforms.Compose([transforms.Resize(256, interpolation=InterpolationMode.BICUBIC),
                                 transforms.CenterCrop(224), normalize])
        crops = 1
    ds = datasets.ImageFolder(args.root, transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True, num_workers=args.workers,
                                         drop_last=True, collate_fn=collate,
                                         persistent_workers=args.workers > 0)
    images = 0
    start = None
    while True:
        for _ in loader:
            if start is None:
                start = time.perf_counter()  # after the first batch: workers are up
                continue
            images += args.batch
            if time.perf_counter() - start >= args.seconds:
                secs = time.perf_counter() - start
                print(json.dumps({"images": images, "seconds": secs, "images_per_s": images / secs,
                                  "crops_per_s": images * crops / secs}))
                return


if __name__ == "__main__":
    main()
