#!/usr/bin/env bash
# Prepares, on a build machine (no GPU needed), what a GPU machine runs scripts/gpu_check.sh with,
# and checks that it travels:
#   1. the set-up with the CUDA libraries and NCCL's headers (the test set-up has them), then
#      target/release/dinov2 with ProcessGroupNCCL compiled in;
#   2. .whl/: the pure-Python reference packages a GPU image lacks (dinov2, omegaconf; their pins
#      from python/), for Python 3.12;
#   3. checks: c10d has nccl; the binary is under 48 MiB; every library it needs resolves from a
#      PyTorch installation seen at another path (links to the venv's torch/ and nvidia/ in a
#      temporary folder) with LD_LIBRARY_PATH alone, and it runs `doctor` there.
# Then, with the device tool (one call; the check itself takes at most ~6 minutes on one H100):
#   run(command="bash scripts/gpu_check.sh $OUT --workdir /tmp/gpu_check",
#       carry=["target/release/dinov2", ".whl"], timeout_s=480)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf '\033[1m[gpu_pack]\033[0m %s\n' "$*" >&2; }
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/setup.sh --with-reference
cargo build --release --bin dinov2
bin=target/release/dinov2

pin() { grep -hE "^$1==" python/requirements*.txt | cut -d' ' -f1; }
rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "$(pin dinov2)" "$(pin omegaconf)"
say "wheels: $(ls .whl | tr '\n' ' ')"

"$bin" doctor --json | python3 -c 'import json, sys; b = json.load(sys.stdin)["c10d_backends"]; sys.exit(0 if "nccl" in b else f"c10d backends {b}: no NCCL (the CUDA libraries and NCCL headers are missing from .venv)")'
size=$(stat -c %s "$bin")
[ "$size" -lt $((48 << 20)) ] || { say "$bin is $size bytes, over 48 MiB"; exit 1; }
say "$bin: $((size >> 20)) MiB, c10d with NCCL"

site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
other="$(mktemp -d)"
trap 'rm -rf "$other"' EXIT
ln -s "$site/torch" "$other/torch"
ln -s "$site/nvidia" "$other/nvidia"
resolved="$(LD_LIBRARY_PATH="$other/torch/lib" ldd "$bin")"
echo "$resolved" | sed 's/^/    /' >&2
if echo "$resolved" | grep -q "not found"; then say "unresolved libraries"; exit 1; fi
for lib in $(readelf -d "$bin" | sed -n 's/.*NEEDED.*\[\(lib\(torch\|c10\)[^]]*\)\].*/\1/p'); do
  echo "$resolved" | grep -q "$lib => $other/torch/lib/" || { say "$lib does not come from LD_LIBRARY_PATH"; exit 1; }
done
env -i LD_LIBRARY_PATH="$other/torch/lib" "$bin" doctor >/dev/null
say "ready: carry target/release/dinov2 and .whl to the GPU machine and run scripts/gpu_check.sh there"
