#!/usr/bin/env python3
"""Conversion and loading as the record count grows: does time per image and memory stay flat?

For each N (default 10k, 50k, 200k) it generates a tree of N small JPEGs (`dinov2 generate`,
100 classes, --mean-width/--mean-height, default 64 x 56, so the disk stays small), converts it
to LMDB and to Arrow shards (`dinov2 convert folder`), then runs `dinov2 bench data` on the
shards and on the plain folder. Each command runs as a child process whose peak resident
memory comes from wait4(); wall time is measured around it. Standard library only.

    python3 bench/scale.py [--sizes 10000,50000,200000] [--workdir runs/scale] [--bin target/release/dinov2]

Prints a Markdown table and writes WORKDIR/scale.json. Resident memory counts the shard pages
a reader touched (file-backed, dropped by the kernel under pressure); the anonymous part is the
process's own.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path


def run(cmd, capture=False):
    """Runs cmd; returns (seconds, peak RSS in MiB, stdout)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE if capture else subprocess.DEVNULL)
    out = p.stdout.read() if capture else b""
    _, status, usage = os.wait4(p.pid, 0)
    secs = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed ({status}): {' '.join(map(str, cmd))}")
    return secs, usage.ru_maxrss / 1024, out.decode()


def du(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,50000,200000")
    ap.add_argument("--workdir", default="runs/scale")
    ap.add_argument("--bin", default="target/release/dinov2")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--height", type=int, default=56)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the trees and shards")
    a = ap.parse_args()
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    rows = []
    for n in [int(s) for s in a.sizes.split(",")]:
        d = work / f"n{n}"
        tree = d / "tree"
        classes = 100
        gen, _, _ = run([a.bin, "generate", "--out", tree, "--classes", str(classes),
                         "--train-per-class", str(n // classes), "--val-per-class", "0",
                         "--mean-width", str(a.width), "--mean-height", str(a.height)])
        row = {"records": n, "generate_s": gen, "tree_mb": du(tree) / 1e6}
        for fmt in ["lmdb", "arrow"]:
            out = d / fmt
            shutil.rmtree(out, ignore_errors=True)
            secs, rss, _ = run([a.bin, "convert", "folder", "--root", tree / "train", "--out", out,
                                "--format", fmt])
            manifest = json.loads((out / "manifest.json").read_text())
            shards = sum(len(s["shards"]) for s in manifest["splits"].values())
            row[fmt] = {
                "convert_s": secs, "convert_us_per_image": secs / n * 1e6, "convert_peak_mb": rss,
                "shards": shards, "shard_mb": du(out) / 1e6,
                "manifest_kb": (out / "manifest.json").stat().st_size / 1e3,
            }
        for name, data in [("lmdb", d / "lmdb"), ("arrow", d / "arrow"), ("folder", tree / "train")]:
            secs, rss, out = run([a.bin, "bench", "data", "--data", data, "--preset", "linear-eval",
                                  "--seconds", str(a.seconds), "--json"], capture=True)
            r = json.loads(out)
            row.setdefault(name, {}).update({
                "load_open_s": r["open_s"], "load_first_batch_s": r["first_batch_s"],
                "load_images_per_s": r["images_per_s"], "load_peak_mb": rss,
                "load_open_files": r["open_files"], "load_memory_maps": r["memory_maps"],
                "load_anon_mb": r["rss_anon_mb"], "load_file_mb": r["rss_file_mb"],
            })
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not a.keep:
            shutil.rmtree(tree, ignore_errors=True)
    (work / "scale.json").write_text(json.dumps({"rows": rows, "nofile_limit": [soft, hard],
                                                 "cores": os.cpu_count()}, indent=1))
    print(f"\nulimit -n: soft {soft}, hard {hard}; {os.cpu_count()} cores\n")
    print("| records | format | convert µs/image | convert peak MB | shards | manifest KB "
          "| loader open s | first batch s | load images/s | load peak RSS MB | anonymous MB | file-backed MB "
          "| open files | maps |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for fmt in ["lmdb", "arrow", "folder"]:
            x = r[fmt]
            conv = (f"{x['convert_us_per_image']:.0f} | {x['convert_peak_mb']:.0f} | {x['shards']} "
                    f"| {x['manifest_kb']:.1f}") if "convert_s" in x else "– | – | – | –"
            print(f"| {r['records']:,} | {fmt} | {conv} | {x['load_open_s']:.3f} "
                  f"| {x['load_first_batch_s']:.3f} | {x['load_images_per_s']:.0f} "
                  f"| {x['load_peak_mb']:.0f} | {x['load_anon_mb']:.0f} | {x['load_file_mb']:.0f} "
                  f"| {x['load_open_files']} | {x['load_memory_maps']} |")


if __name__ == "__main__":
    main()
