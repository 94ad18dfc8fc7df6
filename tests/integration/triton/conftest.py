"""A tiny trained model bundle and a real tritonserver serving its ranker.

Training and export run once per session (a few seconds: tiny catalog, small dims, one
epoch); the server runs on free ports from the committed model repository's config and
``model.py``, so what is tested is what ``magpie up`` serves.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from magpie.datasets.schema import Dataset
from magpie.datasets.synthetic import generate, preset
from magpie.learning.ranker_model import RankerConfig
from magpie.learning.retrieval_model import RetrievalConfig
from magpie.learning.train import PipelineConfig, train_pipeline
from magpie.modelstore.bundle import RANKER_FP32, RANKER_INT8
from magpie.modelstore.publish import publish
from magpie.modelstore.tritonserver import TritonPorts, TritonServer
from magpie.modelstore.writer import write_bundle
from magpie.runtime.settings import TRITON_RANKER
from tests.support import REPO, free_port

MODEL = TRITON_RANKER

_TINY = PipelineConfig(
    use_text=False,
    candidates=20,
    retrieval=RetrievalConfig(dim=16, layers=1, heads=1, epochs=1, eval_every=1),
    ranker=RankerConfig(
        dim=16,
        layers=1,
        heads=1,
        hidden=32,
        epochs=1,
        eval_every=1,
        positions=2,
        negative_pool=8,
        negatives=7,
    ),
)


@dataclass(frozen=True)
class Served:
    server: TritonServer
    repository: Path


def new_repository(directory: Path) -> Path:
    """A model repository holding the committed ranker config and model.py, no versions."""
    shutil.copytree(
        REPO / "model_repository" / MODEL,
        directory / MODEL,
        ignore=shutil.ignore_patterns("[0-9]*"),  # versions a local `magpie up` published
    )
    return directory


def free_ports() -> TritonPorts:
    return TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())


@pytest.fixture(scope="session")
def tiny_world() -> Dataset:
    return generate(preset("tiny", n_products=60, n_users=40, n_events=1500))


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def bundle(tiny_world: Dataset, artifact_dir: Path) -> Path:
    """Version 1: trained for one epoch and written by the real bundle writer."""
    artifacts = train_pipeline(tiny_world, _TINY)
    return write_bundle(artifacts, tiny_world, artifact_dir, 1, {"ndcg@10": 0.1})


@pytest.fixture(scope="session")
def fp32_bundle(bundle: Path, artifact_dir: Path) -> Path:
    """Version 2: the same bundle, but its serving ranker is the FP32 one (other scores)."""
    target = artifact_dir / "2"
    shutil.copytree(bundle, target)
    shutil.copyfile(bundle / RANKER_FP32, target / RANKER_INT8)
    return target


def _serving_version_1(bundle: Path, work: Path) -> Iterator[Served]:
    repository = new_repository(work / "repo")
    publish(bundle, 1, repository, MODEL)
    with TritonServer.start(repository, repository.parent, free_ports(), load=[MODEL]) as server:
        yield Served(server, repository)


@pytest.fixture(scope="session")
def triton(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """tritonserver serving version 1 of the ranker, shared: tests leave it as they found it."""
    yield from _serving_version_1(bundle, tmp_path_factory.mktemp("triton"))


@pytest.fixture
def own_triton(bundle: Path, tmp_path: Path) -> Iterator[Served]:
    """tritonserver serving version 1 of the ranker, for one test that changes what it serves."""
    yield from _serving_version_1(bundle, tmp_path)
