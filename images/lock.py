"""Derive each image's hash-locked requirement set from ``requirements.lock``.

    .venv/bin/python images/lock.py          # rewrite images/*.lock
    .venv/bin/python images/lock.py --check  # exit 1 when a committed file is stale

An image installs only what its processes import, with the lock's exact versions and
hashes (``pip install --require-hashes --no-deps -r images/<image>.lock``). The closure of
each image's roots is computed from the dependency metadata of the packages installed in
this environment (which ``make`` installs from the same lock; a version mismatch is an
error), following extras and environment markers, so ``tritonclient[grpc]`` does not drag
in the HTTP client's gevent and ``celery[redis]`` brings redis but not the other
transports. The roots say why each package is there.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"

SERVING_ROOTS = {
    "grpcio": "every service's server and clients",
    "grpcio-health-checking": "grpc.health.v1 on every server",
    "grpcio-reflection": "server reflection",
    "grpcio-status": "google.rpc rich errors",
    "googleapis-common-protos": "google.rpc messages",
    "protobuf": "the generated magpie.v1 code",
    "pydantic-settings": "magpie.runtime.settings",
    "psycopg2-binary": "PostgreSQL",
    "redis": "caches",
    "celery[redis]": "feedback sends retraining triggers to the broker",
    "alembic": "`magpie db upgrade` (the migration Job runs in this image)",
    "tqdm": "imported by the `magpie` command's data-set subcommands",
    "numpy": "retrieval and ranking arrays",
    "faiss-cpu": "retrieval's ANN index",
    "onnxruntime": "retrieval's user tower runs in process",
    "tritonclient[grpc]": "ranking calls Triton; the model-sync sidecar; triton-config",
    "prometheus-client": "/metrics of every process",
    "opentelemetry-api": "tracing API",
    "opentelemetry-sdk": "tracing SDK (OTEL_* configuration)",
    "opentelemetry-exporter-otlp-proto-grpc": "OTLP export to the collector",
    "opentelemetry-exporter-otlp-proto-http": "OTLP/HTTP export",
    "opentelemetry-instrumentation-grpc": "gRPC spans",
    "opentelemetry-instrumentation-psycopg2": "PostgreSQL spans",
    "opentelemetry-instrumentation-redis": "Redis spans",
    "opentelemetry-instrumentation-celery": "spans of the retraining trigger",
    "starlette": "the web console (services.console)",
    "uvicorn": "the web console's HTTP server",
    "jinja2": "the web console's pages",
}
"""The serving image: the five services and the web console. Never torch,
sentence-transformers, onnx, optuna (the import-linter contract and
tests/integration/e2e/test_service_imports.py)."""

TRAINER_EXCLUDED = {
    "nvidia-pytriton": "the tritonserver binary: only the triton-cpu image serves",
    "pgserver": "the embedded PostgreSQL of `magpie up`",
}
"""The trainer image: every runtime dependency of the library (pyproject's
[project.dependencies]) except these."""

TRITON_CPU_ROOTS = {
    "numpy": "the Python backend stub's numpy",
    "onnxruntime": "model.py runs the INT8 ranker",
}
"""The triton-cpu image: tritonserver (the nvidia-pytriton wheel, installed --no-deps:
only its binary and libraries are used) and what magpie_ranker/model.py imports."""

TRITON_CPU_NODEPS = ("nvidia-pytriton",)


def _lock_blocks(text: str) -> dict[str, tuple[str, str]]:
    """name -> (version, the lock's block for it: the pin and its hashes)."""
    blocks: dict[str, tuple[str, str]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
        if not match:
            continue
        lines = [line for line in block.splitlines() if not line.lstrip().startswith("#")]
        body = "\n".join(lines).rstrip().rstrip("\\").rstrip()
        blocks[canonicalize_name(match.group(1))] = (match.group(2), body)
    return blocks


def _closure(roots: list[str], locked: dict[str, tuple[str, str]]) -> set[str]:
    """Names of the roots and everything they require, extras and markers applied."""
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    todo = [Requirement(root) for root in roots]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        names.add(name)
        if name not in locked:
            raise SystemExit(f"{name} is required but not in {LOCK.name}")
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is not installed: run `make` (installs the lock)") from None
        installed = dist.version.split("+")[0]
        if installed != locked[name][0].split("+")[0]:
            raise SystemExit(f"{name} {dist.version} installed, {locked[name][0]} locked")
        for line in dist.requires or []:
            dependency = Requirement(line)
            for extra in ["", *sorted(requirement.extras)]:
                environment = {**default_environment(), "extra": extra}
                if dependency.marker is None or dependency.marker.evaluate(environment):
                    todo.append(dependency)
                    break
    return names


def _project_dependencies() -> list[str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def _render(image: str, names: set[str], locked: dict[str, tuple[str, str]], why: str) -> str:
    header = (
        f"# {image} image: generated by images/lock.py from requirements.lock ({why}).\n"
        "# Do not edit; run `.venv/bin/python images/lock.py` after changing the lock.\n"
    )
    return header + "".join(locked[name][1] + "\n" for name in sorted(names))


def image_locks() -> dict[str, str]:
    """File name -> content of every image's requirement set."""
    locked = _lock_blocks(LOCK.read_text())
    serving = _closure(list(SERVING_ROOTS), locked)
    forbidden = serving & {"torch", "sentence-transformers", "onnx", "optuna", "transformers"}
    if forbidden:
        raise SystemExit(f"the serving set would contain {sorted(forbidden)}")
    trainer_roots = [
        r
        for r in _project_dependencies()
        if canonicalize_name(Requirement(r).name)
        not in {canonicalize_name(n) for n in TRAINER_EXCLUDED}
    ]
    trainer = _closure(trainer_roots, locked)
    triton = _closure(list(TRITON_CPU_ROOTS), locked)
    return {
        "serving.lock": _render(
            "serving", serving, locked, "the five services and the console, no torch"
        ),
        "trainer.lock": _render("trainer", trainer, locked, "worker, beat, training Jobs"),
        "triton-cpu.lock": _render(
            "triton-cpu", triton, locked, "model.py's imports; nvidia-pytriton --no-deps"
        )
        + "".join(locked[canonicalize_name(n)][1] + "\n" for n in TRITON_CPU_NODEPS),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a file is stale")
    args = parser.parse_args()
    stale = []
    for name, content in image_locks().items():
        path = Path(__file__).with_name(name)
        if path.exists() and path.read_text() == content:
            continue
        if args.check:
            stale.append(name)
        else:
            path.write_text(content)
            print(f"wrote images/{name}")
    if stale:
        print(f"stale: {', '.join(stale)}; run .venv/bin/python images/lock.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
