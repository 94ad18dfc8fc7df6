"""Publishing into a repository of each Triton target lands the file that target serves."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from magpie.modelstore import bundle as layout
from magpie.modelstore.publish import publish, published_versions
from magpie.modelstore.triton_repo import (
    CONFIG_FILE,
    MODEL_FILE,
    MODEL_PY,
    MODEL_PY_SOURCE,
    TARGETS,
    Target,
    read_config,
    target_of,
    write_model_dir,
)
from magpie.modelstore.validate import check_ranker
from magpie.runtime.errors import FailedPrecondition

from .conftest import MODEL

VOCAB_SIZE = 62


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_each_target_gets_its_own_ranker(bundle: Path, tmp_path: Path, target: Target) -> None:
    repository = tmp_path / "repository"
    write_model_dir(repository, MODEL, target)

    version_dir = publish(bundle, 1, repository, MODEL)

    model_dir = repository / MODEL
    assert published_versions(model_dir) == [1]
    assert target_of(read_config(model_dir / CONFIG_FILE)) == target
    served = version_dir / MODEL_FILE
    assert filecmp.cmp(served, bundle / TARGETS[target].bundle_file, shallow=False)
    assert check_ranker(served, VOCAB_SIZE) == []  # loads and scores in ONNX Runtime (CPU)
    if target == "cpu":
        assert filecmp.cmp(version_dir / MODEL_PY, MODEL_PY_SOURCE, shallow=False)
        assert {p.name for p in version_dir.iterdir()} == {MODEL_FILE, MODEL_PY}
    else:
        assert {p.name for p in version_dir.iterdir()} == {MODEL_FILE}


def test_targets_serve_different_exports(bundle: Path) -> None:
    assert TARGETS["cpu"].bundle_file == layout.RANKER_INT8
    assert TARGETS["gpu"].bundle_file == layout.RANKER_FP32
    assert not filecmp.cmp(bundle / layout.RANKER_INT8, bundle / layout.RANKER_FP32)


def test_a_repository_without_a_ranker_config_is_refused(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / MODEL).mkdir()

    with pytest.raises(FailedPrecondition) as refused:
        publish(bundle, 1, tmp_path, MODEL)

    assert CONFIG_FILE in str(refused.value)
    assert not (tmp_path / MODEL / "1").exists()
