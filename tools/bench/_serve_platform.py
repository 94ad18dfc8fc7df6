"""One trained platform for `tools.bench.serving`, running the code of whichever tree
PYTHONPATH names (the current checkout, or a worktree of the baseline REF):

    PYTHONPATH=TREE python -P tools/bench/_serve_platform.py --products N --users N
        --events N --redis-url URL --settings JSON   (from TREE as the working directory)

It brings the platform up with the tree's own `tools.bench._platform.trained_platform`
(so it imports only what both trees have), prints one JSON line on stdout (addresses,
pids, users, the model bundle, the tree it imported `magpie` from) and keeps the
platform up until its stdin closes. Run by path with ``-P``, so that this folder's
modules do not shadow installed packages and ``tools`` and ``magpie`` come from TREE.
Everything else the platform writes on stdout goes to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__: list[str] = []


def _job(platform: Any, users: list[str]) -> dict[str, Any]:
    """What the load generator needs to reach and measure this platform."""
    from magpie.platform.local import SERVICES, SOURCE_ROOT
    from tools.bench._platform import with_descendants

    local, settings, version = platform.local, platform.settings, platform.version
    bundle = Path(settings.artifact_dir) / str(version)
    vocab = len(json.loads((bundle / "vocab.json").read_text())["item_ids"])
    return {
        "source_root": str(SOURCE_ROOT),
        "bundle": str(bundle),
        "addresses": {n: local.layout.address(n) for n in SERVICES},
        "triton": settings.triton_addr,
        "triton_model": settings.triton_model,
        "version": str(version),
        "vocab": vocab + 2,
        "users": users,
        "processes": {n: with_descendants(pid) for n, pid in local.running().items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, required=True)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--settings", type=json.loads, required=True, help="MAGPIE_* values")
    args = parser.parse_args()
    job_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    from magpie.datasets import synthetic
    from magpie.platform.demo import demo_world
    from tools.bench._platform import trained_platform

    world = demo_world(args.products, args.users, args.events)
    dataset = synthetic.generate(dataclasses.replace(world, name="bench"))
    with (
        tempfile.TemporaryDirectory(prefix="magpie-serving-") as state,
        trained_platform(
            Path(state),
            dataset,
            settings=args.settings,
            redis_url=args.redis_url,
        ) as platform,
    ):
        print(json.dumps(_job(platform, [u.user_id for u in dataset.users])), file=job_out)
        job_out.flush()
        sys.stdin.read()


if __name__ == "__main__":
    main()
