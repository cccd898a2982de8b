#!/usr/bin/env bash
# The GPU acceptance run, set up for the machine it runs on (the checks: scripts/gpu_check.py).
#
#   scripts/gpu_check.sh OUT [--dry-run] [--budget SECONDS] [--only doctor,features,...] [--workdir DIR]
#
# OUT receives gpu_check.json, gpu_check.md and logs.tar.gz; the generated data and the runs go to
# --workdir (default OUT/work). --dry-run runs every step on the CPU at tiny sizes (CI does).
#
# - The binary: $DINOV2_BIN, else target/release/dinov2. It may come from another machine
#   (scripts/gpu_pack.sh builds and checks one): it needs only the libraries of a PyTorch of
#   the release it was built against.
# - Python: $DINOV2_PYTHON, else the project venv (.venv), else python3 (a GPU image's PyTorch).
# - Where that Python lacks the reference packages (dinov2, omegaconf), the wheels in .whl/
#   (scripts/gpu_pack.sh downloads them) are installed into a private folder on PYTHONPATH.
# - LD_LIBRARY_PATH starts with that Python's torch/lib: the binary's runpath names the build
#   machine's venv, which a carried binary does not find.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || { echo "usage: $0 OUT [--dry-run] [--budget S] [--only STEPS] [--workdir DIR]" >&2; exit 2; }
out="$1"; shift
bin="${DINOV2_BIN:-$root/target/release/dinov2}"
py="${DINOV2_PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py="$(command -v python3)"; fi
fi
[ -x "$bin" ] || { echo "no dinov2 binary at $bin (cargo build --release, or set DINOV2_BIN)" >&2; exit 1; }
if ! "$py" -c "import dinov2, omegaconf" 2>/dev/null; then
  if compgen -G "$root/.whl/*.whl" >/dev/null; then
    site="${TMPDIR:-/tmp}/dinov2_gpu_check_site"
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$root"/.whl/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  "$py" -c "import dinov2, omegaconf" || {
    echo "$py lacks the reference packages dinov2 and omegaconf: run scripts/gpu_pack.sh where PyPI is reachable and bring .whl/" >&2
    exit 1
  }
fi
torch_lib="$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export DINOV2_PYTHON="$py" PYTHONUNBUFFERED=1
exec "$py" "$root/scripts/gpu_check.py" --out "$out" --bin "$bin" --python "$py" "$@"
