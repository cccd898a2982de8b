"""Largest |difference| between two safetensors files with the same tensor names (e.g. a resumed
run's checkpoint against the uninterrupted run's). Prints JSON: tensors, max_abs_diff, and the
tensor where it is largest.

usage: safetensors_diff.py A.safetensors B.safetensors
"""
import json
import sys

import numpy as np
from safetensors.numpy import load_file

a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
if sorted(a) != sorted(b):
    sys.exit(f"different tensors: {sorted(set(a) ^ set(b))}")
diffs = {k: float(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)).max()) if a[k].size else 0.0 for k in a}
worst = max(diffs, key=diffs.get)
print(json.dumps({"tensors": len(a), "max_abs_diff": diffs[worst], "worst_tensor": worst}))
