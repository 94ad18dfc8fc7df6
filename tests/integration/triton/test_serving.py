"""A real tritonserver serving the ranker: exact scores, batching, live version swaps."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from services.common.errors import Unavailable
from services.learning.export import OnnxRanker
from services.learning.signature import CONTEXT_DIM, HISTORY_LEN, SCORES
from services.modelstore.bundle import RANKER_INT8
from services.modelstore.client import RankerClient, infer_inputs, pad_candidates
from services.modelstore.publish import publish, published_versions
from services.modelstore.tritonserver import TritonServer
from services.modelstore.validate import InvalidBundle

from .conftest import MODEL, Served, free_ports, new_repository

VOCAB_SIZE = 62


def _request(seed: int, candidates: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    history = np.zeros((1, HISTORY_LEN), dtype=np.int64)
    history[0, -12:] = rng.integers(2, VOCAB_SIZE, 12)
    ids = rng.integers(1, VOCAB_SIZE, (1, candidates)).astype(np.int64)
    context = rng.normal(size=(1, CONTEXT_DIM)).astype(np.float32)
    return history, ids, context


async def test_scores_equal_onnxruntime_on_the_same_int8_model(
    triton: Served, bundle: Path
) -> None:
    reference = OnnxRanker(bundle / RANKER_INT8, threads=1)
    client = RankerClient(triton.server.grpc_addr, MODEL, timeout=10.0)
    requests = [_request(seed, count) for seed, count in enumerate((500, 500, 37, 130, 500))]
    try:
        results = await asyncio.gather(*(client.score(*request) for request in requests))
    finally:
        await client.close()
    for request, (scores, version) in zip(requests, results, strict=True):
        assert version == "1"
        assert scores.shape == request[1].shape
        np.testing.assert_allclose(scores, reference(*request), rtol=0, atol=1e-5)


class _Loop(threading.Thread):
    """Scores one request over and over until stopped; counts failures and versions."""

    def __init__(self, addr: str) -> None:
        super().__init__(daemon=True)
        self.addr = addr
        self.stop = threading.Event()
        self.calls = 0
        self.failures: list[str] = []
        self.versions: list[str] = []
        self.request = _request(7, 500)

    def run(self) -> None:
        client = grpcclient.InferenceServerClient(self.addr)
        history, ids, context = self.request
        inputs = infer_inputs(history, pad_candidates(ids), context)
        while not self.stop.is_set():
            try:
                result = client.infer(MODEL, inputs, client_timeout=10.0)
                scores = result.as_numpy(SCORES)
                version = str(result.get_response().model_version)
                if not np.isfinite(scores).all():
                    self.failures.append("non-finite scores")
                if not self.versions or self.versions[-1] != version:
                    self.versions.append(version)
            except Exception as error:  # noqa: BLE001 - every failure is counted
                self.failures.append(repr(error))
            self.calls += 1
        client.close()


def test_new_version_and_rollback_swap_without_a_failed_call(
    triton: Served, bundle: Path, fp32_bundle: Path
) -> None:
    loop = _Loop(triton.server.grpc_addr)
    loop.start()
    try:
        publish(fp32_bundle, 2, triton.repository, MODEL, triton.server.grpc_addr)
        client = grpcclient.InferenceServerClient(triton.server.grpc_addr)
        upgraded = client.infer(MODEL, infer_inputs(*loop.request)).as_numpy(SCORES)
        publish(bundle, 1, triton.repository, MODEL, triton.server.grpc_addr)
        rolled_back = client.infer(MODEL, infer_inputs(*loop.request))
        client.close()
    finally:
        loop.stop.set()
        loop.join()
    assert loop.failures == []
    assert loop.calls > 10
    assert loop.versions == ["1", "2", "1"]
    np.testing.assert_allclose(
        upgraded, OnnxRanker(fp32_bundle / RANKER_INT8)(*loop.request), rtol=0, atol=1e-5
    )
    assert str(rolled_back.get_response().model_version) == "1"
    assert published_versions(triton.repository / MODEL) == [1]


def test_broken_version_is_refused_before_it_lands(
    triton: Served, bundle: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "3"
    shutil.copytree(bundle, broken)
    (broken / RANKER_INT8).write_bytes(b"not an onnx model")
    with pytest.raises(InvalidBundle):
        publish(broken, 3, triton.repository, MODEL, triton.server.grpc_addr)
    assert published_versions(triton.repository / MODEL) == [1]
    client = grpcclient.InferenceServerClient(triton.server.grpc_addr)
    assert client.is_model_ready(MODEL, "1")
    client.close()


def test_a_broken_highest_version_stops_a_starting_server(bundle: Path, tmp_path: Path) -> None:
    """Why publish validates: tritonserver (exit-on-error) will not start with one."""
    repository = new_repository(tmp_path / "repo")
    publish(bundle, 1, repository, MODEL)
    shutil.copytree(repository / MODEL / "1", repository / MODEL / "2")
    (repository / MODEL / "2" / "model.onnx").write_bytes(b"broken")
    with pytest.raises(Unavailable):
        TritonServer.start(repository, tmp_path, free_ports(), load=[MODEL], timeout=60)
    shutil.rmtree(repository / MODEL / "2")
    with TritonServer.start(repository, tmp_path, free_ports(), load=[MODEL]) as server:
        client = grpcclient.InferenceServerClient(server.grpc_addr)
        assert client.is_model_ready(MODEL, "1")
        client.close()


def test_a_stale_version_directory_is_replaced_by_the_bundle(bundle: Path, tmp_path: Path) -> None:
    repository = new_repository(tmp_path)
    stale = repository / MODEL / "1"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"a model from another registry")

    target = publish(bundle, 1, repository, MODEL)

    assert (target / "model.onnx").read_bytes() == (bundle / RANKER_INT8).read_bytes()
