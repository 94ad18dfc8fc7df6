"""Bundles written by the writer validate; damaged ones are refused."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from magpie.contract.signature import HISTORY_IDS, USER_VECTORS
from magpie.modelstore.bundle import (
    COVISITATION,
    ITEM_VECTORS,
    METADATA,
    RANKER_INT8,
    REQUIRED_FILES,
    USER_TOWER,
    VOCAB,
)
from magpie.modelstore.triton_repo import TARGETS
from magpie.modelstore.validate import InvalidBundle, validate_bundle


def test_written_bundle_is_complete_and_valid(bundle: Path) -> None:
    validate_bundle(bundle)
    names = {p.name for p in bundle.iterdir()}
    assert names == set(REQUIRED_FILES)
    metadata = json.loads((bundle / METADATA).read_text())
    assert metadata["version"] == 1 and metadata["metrics"] == {"ndcg@10": 0.1}
    vocab_size = len(json.loads((bundle / VOCAB).read_text())["item_ids"]) + 2
    assert metadata["vocab_size"] == vocab_size == 62
    with np.load(bundle / COVISITATION) as covisitation:
        indptr = covisitation["indptr"]
        assert len(indptr) == vocab_size + 1 and indptr[-1] > 0
        assert np.diff(indptr).max() <= 50
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".staging")]


def test_every_ranker_the_writer_exports_is_served_by_a_target(bundle: Path) -> None:
    """Nothing is written that no Triton target reads, and no target reads a missing file."""
    rankers = {p.name for p in bundle.iterdir() if p.name.startswith("ranker")}
    served = {target.bundle_file for target in TARGETS.values()}

    assert rankers == served
    assert len(served) == len(TARGETS)  # each target its own export


def _remove_covisitation(path: Path) -> None:
    (path / COVISITATION).unlink()


def _truncate_ranker(path: Path) -> None:
    data = (path / RANKER_INT8).read_bytes()
    (path / RANKER_INT8).write_bytes(data[: len(data) // 2])


def _shrink_item_vectors(path: Path) -> None:
    np.save(path / ITEM_VECTORS, np.load(path / ITEM_VECTORS)[:-1])


def _break_vocab(path: Path) -> None:
    (path / VOCAB).write_text("[1, 2")


def _user_tower_failing_short_histories(path: Path) -> None:
    """A user tower whose vectors are finite for a full history only: sqrt(length - 100)."""
    import onnx
    from onnx import TensorProto, helper

    dim = int(np.load(path / ITEM_VECTORS).shape[-1])
    constant = helper.make_tensor
    nodes = [
        helper.make_node("Shape", [HISTORY_IDS], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["length"]),
        helper.make_node("Cast", ["length"], ["float_length"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["float_length", "hundred"], ["shifted"]),
        helper.make_node("Sqrt", ["shifted"], ["root"]),
        helper.make_node("Expand", ["root", "out_shape"], [USER_VECTORS]),
    ]
    graph = helper.make_graph(
        nodes,
        "short_history_nan",
        [helper.make_tensor_value_info(HISTORY_IDS, TensorProto.INT64, [1, "length"])],
        [helper.make_tensor_value_info(USER_VECTORS, TensorProto.FLOAT, [1, dim])],
        initializer=[
            constant("one", TensorProto.INT64, [], [1]),
            constant("hundred", TensorProto.FLOAT, [], [100.0]),
            constant("out_shape", TensorProto.INT64, [2], [1, dim]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path / USER_TOWER)


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (_remove_covisitation, COVISITATION),
        (_truncate_ranker, RANKER_INT8),
        (_shrink_item_vectors, ITEM_VECTORS),
        (_break_vocab, "JSONDecodeError"),
        (_user_tower_failing_short_histories, "user vector of a 3-item history"),
    ],
)
def test_damaged_bundle_is_refused(
    bundle: Path, tmp_path: Path, damage: Callable[[Path], None], named: str
) -> None:
    broken = tmp_path / "1"
    shutil.copytree(bundle, broken)
    damage(broken)
    with pytest.raises(InvalidBundle) as refused:
        validate_bundle(broken)
    assert named in str(refused.value)
