#!/usr/bin/env bash
# One-time, idempotent set-up of everything the build and the tests need:
#   1. Debian packages (cmake, nasm, g++, python3-venv, libgloo-dev, pkg-config) when missing;
#   2. a project-local venv in .venv with the torch pinned in python/requirements-torch.txt
#      (2.11.0, the libtorch tch 0.24 links against)
#      and the pinned Python reference packages the tests compare against;
#   3. the link .venv/torch -> site-packages/torch that .cargo/config.toml points torch-sys at.
# Reruns are cheap: each step is skipped when its stamp matches.
#
# Environment:
#   DINOV2_TORCH=cpu|cuda   force the small CPU-only torch install or the full CUDA one
#                           (default: cuda when `nvidia-smi -L` lists a GPU, else cpu)
#   LIBTORCH=/path          build against an existing libtorch instead (the venv is still made:
#                           the Python reference tests need it)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# --- 1. Debian packages -------------------------------------------------------------------
apt_pkgs=(cmake nasm g++ python3-venv libgloo-dev pkg-config fonts-dejavu-core)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { say "need root or sudo to install: ${missing[*]}"; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { say "cargo not found: install the Rust toolchain (rustup) first"; exit 1; }

# --- 2. Python venv -----------------------------------------------------------------------
# Two layers, each with its own stamp:
#   core       what the Rust build and the binary need: libtorch. On a machine without a GPU the
#              small install (torch --no-deps + libcudart + libcupti, ~540 MB); with a GPU the full
#              torch install (cuDNN, cuBLAS, NCCL, ... ~2.8 GB).
#   reference  (--with-reference, used by the tests) the Python side of the parity tests. Python's
#              `import torch` loads libtorch_python.so, which links libtorch_cuda.so and so needs the
#              whole nvidia-* set even on CPU; it is added here (without triton, see
#              python/requirements-torch-libs.txt), then the pinned reference packages.
with_ref=0
for a in "$@"; do
  case "$a" in --with-reference) with_ref=1;; *) say "unknown option $a"; exit 2;; esac
done
mode="${DINOV2_TORCH:-}"
if [ -z "$mode" ]; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then mode=cuda; else mode=cpu; fi
fi
case "$mode" in cpu|cuda) ;; *) say "DINOV2_TORCH must be cpu or cuda, not '$mode'"; exit 1;; esac

venv="$root/.venv"
# --no-cache-dir: the wheels (~3 GB with the CUDA libraries) are not kept a second time in ~/.cache.
pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-cache-dir -q)
[ -x "$venv/bin/python" ] || { say "creating $venv"; python3 -m venv "$venv"; }
layer() { # layer NAME HASH-INPUT...: true when the layer's stamp is stale
  local want; want="$(cat "${@:2}" | sha256sum | cut -c1-16) $mode"
  [ "$(cat "$venv/.stamp-$1" 2>/dev/null)" != "$want" ] && echo "$want" >"$venv/.stamp-$1.want"
}
done_layer() { mv "$venv/.stamp-$1.want" "$venv/.stamp-$1"; }

# The one torch pin (and NCCL's build headers) of python/requirements-torch.txt.
pin() { grep -E "^$1==" python/requirements-torch.txt | cut -d' ' -f1; }
torch_pin="$(pin torch)"
[ -n "$torch_pin" ] || { say "python/requirements-torch.txt pins no torch"; exit 1; }
if layer core python/requirements-torch-cpu.txt python/requirements-torch.txt; then
  if [ "$mode" = cuda ]; then
    say "installing $torch_pin with its CUDA libraries (~2.8 GB)"
    "${pip[@]}" install "$torch_pin" "$(pin nvidia-cuda-crt)" "$(pin nvidia-cuda-cccl)"
  else
    say "installing $torch_pin, CPU-only (~540 MB)"
    "${pip[@]}" install --no-deps "$torch_pin" -r python/requirements-torch-cpu.txt
  fi
  done_layer core
fi
if [ "$with_ref" = 1 ] && layer reference python/requirements.txt python/requirements-torch.txt \
    python/requirements-torch-libs.txt; then
  say "installing the Python reference packages for the tests"
  # --no-warn-conflicts: on a CPU machine torch's triton is left out on purpose (pip would print
  # an ERROR about it); the import below checks that what the tests use loads.
  "${pip[@]}" install --no-warn-conflicts -r python/requirements.txt
  # on a CPU-only core this adds the nvidia-* libraries `import torch` loads (no triton)
  [ "$mode" = cuda ] || "${pip[@]}" install --no-warn-conflicts -r python/requirements-torch-libs.txt
  "${pip[@]}" install --no-warn-conflicts --no-deps -r python/requirements-torch.txt
  "$venv/bin/python" -c "import torch, torchvision, timm, numpy, lmdb, pyarrow, safetensors; print('[setup] python torch', torch.__version__)" >&2
  done_layer reference
fi

# --- 3. the path torch-sys is pointed at (see .cargo/config.toml) ---------------------------
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
ln -sfn "${site#"$venv"/}/torch" "$venv/torch"
[ -f "$venv/torch/lib/libtorch_cpu.so" ] || { say "no libtorch_cpu.so under $venv/torch/lib"; exit 1; }
say "ready: libtorch at $venv/torch${LIBTORCH:+ (build uses LIBTORCH=$LIBTORCH)}"
