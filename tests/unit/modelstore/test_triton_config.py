"""Generated Triton configs parse back into the intended ModelConfig (both targets)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from magpie.contract.signature import CANDIDATE_FEATURE_DIM, CONTEXT_DIM, HISTORY_LEN, PAD_INDEX
from magpie.modelstore import cli
from magpie.modelstore.client import pad_candidates
from magpie.modelstore.triton_repo import (
    CONFIG_FILE,
    MODEL_PY,
    MODEL_PY_SOURCE,
    TARGETS,
    Target,
    model_config,
    read_config,
    target_of,
    write_model_dir,
)
from magpie.runtime.settings import TRITON_RANKER

REPO = Path(__file__).resolve().parents[3]
COMMITTED = REPO / "model_repository" / TRITON_RANKER


def _tensors(fields: object) -> dict[str, tuple[int, list[int]]]:
    return {t.name: (t.data_type, list(t.dims)) for t in fields}  # type: ignore[attr-defined]


def _check_shapes(config: mc.ModelConfig, batch: list[int]) -> None:
    """``batch`` is [-1] when the dims carry the batch dimension (max_batch_size 0)."""
    assert _tensors(config.input) == {
        "history_ids": (mc.TYPE_INT64, [*batch, HISTORY_LEN]),
        "candidate_ids": (mc.TYPE_INT64, [*batch, -1]),
        "context": (mc.TYPE_FP32, [*batch, CONTEXT_DIM]),
        "candidate_features": (mc.TYPE_FP32, [*batch, -1, CANDIDATE_FEATURE_DIM]),
    }
    assert _tensors(config.output) == {"scores": (mc.TYPE_FP32, [*batch, -1])}
    # Every version directory present is served: publish keeps champion, previous, staged.
    assert config.version_policy.WhichOneof("policy_choice") == "all"


def test_committed_cpu_repository_is_the_generated_one(tmp_path: Path) -> None:
    write_model_dir(tmp_path, TRITON_RANKER, "cpu")
    assert (COMMITTED / CONFIG_FILE).read_text() == (
        tmp_path / "magpie_ranker/config.pbtxt"
    ).read_text()
    assert (COMMITTED / MODEL_PY).read_bytes() == MODEL_PY_SOURCE.read_bytes()


def test_cpu_config_round_trip() -> None:
    config = read_config(COMMITTED / CONFIG_FILE)
    assert config == model_config(TRITON_RANKER, "cpu")
    assert (config.name, config.backend, config.platform) == (TRITON_RANKER, "python", "")
    assert config.max_batch_size == TARGETS["cpu"].max_batch_size == 0
    # Per-request INT8 scales: the batcher, there for its queue policy, merges nothing.
    assert not config.dynamic_batching.preferred_batch_size
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (mc.ModelInstanceGroup.KIND_CPU, 2)
    ]
    assert config.parameters["intra_op_threads"].string_value == "1"  # no spinning pool
    _check_shapes(config, [-1])


def test_gpu_config_round_trip_via_cli(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["model", "triton-config", "--target", "gpu", "--out", str(tmp_path), "--model", "r"]
    )
    assert args.handler(args) == 0
    config = read_config(tmp_path / "r" / CONFIG_FILE)
    assert (config.name, config.platform, config.backend) == ("r", "onnxruntime_onnx", "")
    assert config.default_model_filename == "model.onnx"
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (mc.ModelInstanceGroup.KIND_GPU, 2)
    ]
    (tensorrt,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert tensorrt.name == "tensorrt"
    assert tensorrt.parameters["precision_mode"] == "FP16"
    assert list(config.dynamic_batching.preferred_batch_size) == [16, 32, 64]
    assert config.max_batch_size == 64
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    _check_shapes(config, [])
    assert not (tmp_path / "r" / MODEL_PY).exists()


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_request_queued_past_its_time_is_rejected(target: Target, tmp_path: Path) -> None:
    """Written and parsed back: Triton drops what waited too long or finds the queue full,
    rather than score it for a caller that gave up (UNAVAILABLE: the ranking degrades)."""
    config = read_config(write_model_dir(tmp_path, TRITON_RANKER, target) / CONFIG_FILE)

    queue = config.dynamic_batching.default_queue_policy
    assert queue.timeout_action == mc.ModelQueuePolicy.REJECT
    assert queue.default_timeout_microseconds == 1_000_000
    assert queue.allow_timeout_override  # each request shortens it to its own budget
    assert queue.max_queue_size == TARGETS[target].max_queue_size > 0
    assert config == model_config(TRITON_RANKER, target)


def test_candidates_and_their_features_are_padded_to_the_bucket() -> None:
    candidates = np.arange(2, 502, dtype=np.int64)[None]
    features = np.random.default_rng(0).random((1, 500, CANDIDATE_FEATURE_DIM)) + 0.5
    padded, padded_features = pad_candidates(candidates, features)
    assert padded.shape == (1, 512)
    assert (padded[0, :500] == candidates[0]).all() and (padded[0, 500:] == PAD_INDEX).all()
    assert padded_features.shape == (1, 512, CANDIDATE_FEATURE_DIM)
    assert padded_features.dtype == np.float32
    np.testing.assert_array_equal(padded_features[0, :500], features[0].astype(np.float32))
    assert not padded_features[0, 500:].any()  # a PAD candidate's features are zero
    for count in (64, 1):
        ids, more = pad_candidates(candidates[:, :count], features[:, :count])
        assert ids.shape == (1, 64) and more.shape == (1, 64, CANDIDATE_FEATURE_DIM)


def test_features_must_match_the_candidates() -> None:
    candidates = np.arange(2, 12, dtype=np.int64)[None]
    with pytest.raises(ValueError, match="candidate_features"):
        pad_candidates(candidates, np.zeros((1, 9, CANDIDATE_FEATURE_DIM)))
    with pytest.raises(ValueError, match="candidate_features"):
        pad_candidates(candidates, np.zeros((1, 10, CANDIDATE_FEATURE_DIM + 1)))


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_config_names_the_target_it_was_written_for(target: Target) -> None:
    assert target_of(model_config(TRITON_RANKER, target)) == target
