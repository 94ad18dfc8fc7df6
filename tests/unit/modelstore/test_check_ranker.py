"""The ranker check feeds every input of the signature, so an outdated export is refused."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from magpie.contract.signature import (
    CANDIDATE_FEATURE_DIM,
    CANDIDATE_FEATURES,
    CANDIDATE_IDS,
    CONTEXT,
    CONTEXT_DIM,
    HISTORY_IDS,
    HISTORY_LEN,
    SCORES,
)
from magpie.modelstore.validate import check_ranker


def _ranker(path: Path, with_features: bool) -> Path:
    """A stand-in ranker (scores = candidate ids) with or without ``candidate_features``."""
    inputs = [
        helper.make_tensor_value_info(HISTORY_IDS, TensorProto.INT64, ["n", HISTORY_LEN]),
        helper.make_tensor_value_info(CANDIDATE_IDS, TensorProto.INT64, ["n", "c"]),
        helper.make_tensor_value_info(CONTEXT, TensorProto.FLOAT, ["n", CONTEXT_DIM]),
    ]
    if with_features:
        shape = ["n", "c", CANDIDATE_FEATURE_DIM]
        inputs.append(helper.make_tensor_value_info(CANDIDATE_FEATURES, TensorProto.FLOAT, shape))
    graph = helper.make_graph(
        [helper.make_node("Cast", [CANDIDATE_IDS], [SCORES], to=TensorProto.FLOAT)],
        "ranker",
        inputs,
        [helper.make_tensor_value_info(SCORES, TensorProto.FLOAT, ["n", "c"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_current_signature_passes(tmp_path: Path) -> None:
    assert check_ranker(_ranker(tmp_path / "ranker.onnx", with_features=True), 62) == []


def test_ranker_without_candidate_features_is_refused(tmp_path: Path) -> None:
    (problem,) = check_ranker(_ranker(tmp_path / "ranker.onnx", with_features=False), 62)
    assert CANDIDATE_FEATURES in problem
