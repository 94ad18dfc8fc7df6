#!/bin/sh
# Build-stage helper: a virtual environment at /opt/magpie with exactly one lock file's
# packages (hash-checked, no dependency resolution: the lock is already the closure), and
# optionally the magpie wheel; then pip itself is removed. From /wheels alone when the
# build context carried a wheelhouse.
set -eu
lock="/locks/$1"; shift
python3 -m venv /opt/magpie
set -- "$@"
source_args=""
if ls /wheels/*.whl >/dev/null 2>&1; then source_args="--no-index --find-links /wheels"; fi
# shellcheck disable=SC2086
/opt/magpie/bin/pip install $source_args --no-deps --require-hashes -r "$lock"
if [ "$#" -gt 0 ]; then
  /opt/magpie/bin/pip install --no-index --no-deps "$@"
fi
/opt/magpie/bin/python -m pip uninstall --yes pip >/dev/null
find /opt/magpie -name '__pycache__' -path '*/tests/*' -prune -exec rm -rf {} + 2>/dev/null || true
rm -rf /root/.cache
