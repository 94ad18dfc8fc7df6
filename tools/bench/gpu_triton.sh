#!/usr/bin/env bash
# Ranker behind tritonserver on the GPU machine -> $OUT/gpu-triton.json (see gpu_triton.py).
#
# Needs the nvidia-pytriton wheel (it carries tritonserver and the Python 3.12 backend
# stub), fetched beforehand on a machine with network access:
#   pip download nvidia-pytriton==0.7.0 --python-version 3.12 --only-binary=:all: \
#       --no-deps -d wheels/
# Usage: tools/bench/gpu_triton.sh [WHEEL_DIR] [gpu_triton.py options...]
# The whole run is bounded by BENCH_TIMEOUT seconds (default 420). If tritonserver cannot
# start, the JSON still holds the direct torch numbers and the reason.
set -uo pipefail
cd "$(dirname "$0")/../.."
WHEELS=${1:-wheels}
shift || true
OUT=${OUT:-bench-results}
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

SITE=""
if ! "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("pytriton") is None)'; then
  WHEEL=$(ls "$WHEELS"/nvidia_pytriton-*.whl 2>/dev/null | head -n 1)
  if [ -n "$WHEEL" ]; then
    # unpack instead of pip install: no dependency resolution, no network
    "$PY" -m zipfile -e "$WHEEL" "$WORK/site"
    chmod +x "$WORK/site/pytriton/tritonserver/bin/tritonserver" \
      "$WORK"/site/pytriton/tritonserver/python_backend_stubs/*/triton_python_backend_stub
    SITE="$WORK/site"
  else
    echo "no nvidia-pytriton wheel in $WHEELS: only the direct torch path will be measured" >&2
  fi
fi
export PYTHONPATH="$PWD${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"
timeout -k 15 "${BENCH_TIMEOUT:-420}" "$PY" -m tools.bench.gpu_triton \
  --output "$OUT/gpu-triton.json" "$@"
status=$?
[ -f "$OUT/gpu-triton.json" ] || echo "{\"error\": \"gpu_triton.py exited $status\"}" > "$OUT/gpu-triton.json"
exit $status
