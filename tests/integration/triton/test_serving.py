"""A real tritonserver serving the ranker: exact scores, batching, live version swaps."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from magpie.contract.covisitation import Covisitation
from magpie.contract.signature import CONTEXT_DIM, HISTORY_LEN, OOV_INDEX, SCORES
from magpie.learning.export import OnnxRanker
from magpie.learning.train import RankerInputs
from magpie.modelstore.bundle import COVISITATION, RANKER_INT8
from magpie.modelstore.client import RankerClient, infer_inputs, pad_candidates
from magpie.modelstore.publish import publish, published_versions
from magpie.modelstore.tritonserver import TritonServer
from magpie.modelstore.validate import InvalidBundle
from magpie.runtime.errors import Unavailable
from services.ranking.downstream import GuardedRanker
from services.ranking.model import load_serving_model

from .conftest import MODEL, Served, free_ports, new_repository

VOCAB_SIZE = 62


def _covisitation(bundle: Path) -> Covisitation:
    with np.load(bundle / COVISITATION) as arrays:
        return Covisitation.from_arrays(arrays)


def _request(seed: int, candidates: int, covisitation: Covisitation) -> RankerInputs:
    """One user's inputs; the candidate features come from the bundle's co-visitation lists,
    as in the ranking service."""
    rng = np.random.default_rng(seed)
    history = np.zeros((1, HISTORY_LEN), dtype=np.int64)
    history[0, -12:] = rng.integers(2, VOCAB_SIZE, 12)
    ids = rng.integers(1, VOCAB_SIZE, (1, candidates)).astype(np.int64)
    context = rng.normal(size=(1, CONTEXT_DIM)).astype(np.float32)
    return history, ids, context, covisitation.features(history, ids)


async def test_scores_equal_onnxruntime_on_the_same_int8_model(
    triton: Served, bundle: Path
) -> None:
    reference = OnnxRanker(bundle / RANKER_INT8, threads=1)
    client = RankerClient(triton.server.grpc_addr, MODEL, timeout=10.0)
    lists = _covisitation(bundle)
    requests = [_request(seed, n, lists) for seed, n in enumerate((500, 500, 37, 130, 500))]
    history, ids, context, features = requests[0]
    no_features = (history, ids, context, np.zeros_like(features))
    try:
        results = await asyncio.gather(*(client.score(*request) for request in requests))
        without, _ = await client.score(*no_features)
    finally:
        await client.close()
    for request, (scores, version) in zip(requests, results, strict=True):
        assert version == "1"
        assert scores.shape == request[1].shape
        co_visited = (request[3] > 0).any(axis=-1).mean()
        assert co_visited > 0.2  # the features input is really exercised
        np.testing.assert_allclose(scores, reference.scores(request), rtol=0, atol=1e-5)
    # Triton reads the features: without them the same request scores otherwise.
    np.testing.assert_allclose(without, reference.scores(no_features), rtol=0, atol=1e-5)
    assert np.abs(results[0][0] - without).max() > 1e-3


async def test_ranking_service_inputs_carry_the_bundles_features_to_triton(
    triton: Served, bundle: Path
) -> None:
    """What the ranking service sends (its ServingModel's inputs, through GuardedRanker and
    RankerClient) is scored by Triton as ONNX Runtime scores it, features included."""
    model = load_serving_model(1, bundle)
    lists = _covisitation(bundle)
    product = {row: pid for pid, row in model.positions.items()}
    with_neighbours = np.flatnonzero(np.diff(lists.indptr))
    recent = tuple(product[int(row)] for row in with_neighbours[:5])  # newest first
    candidates = [*product.values(), "not-in-this-version"]
    inputs = model.inputs(recent, candidates, 1_700_000_000.0, 1_699_990_000.0, "web")
    history, ids, _, features = inputs

    np.testing.assert_array_equal(features, lists.features(history, ids))
    assert (features > 0).any(axis=-1).mean() > 0.2
    assert ids[0, -1] == OOV_INDEX and not features[0, -1].any()
    client = RankerClient(triton.server.grpc_addr, MODEL, timeout=10.0)
    try:
        scores = await GuardedRanker(client).score(model, *inputs)
    finally:
        await client.close()
    reference = OnnxRanker(bundle / RANKER_INT8, threads=1).scores(inputs)
    np.testing.assert_allclose(scores, reference[0], rtol=0, atol=1e-5)


class _Loop(threading.Thread):
    """Scores one request over and over until stopped; counts failures and versions."""

    def __init__(self, addr: str, covisitation: Covisitation) -> None:
        super().__init__(daemon=True)
        self.addr = addr
        self.stop = threading.Event()
        self.calls = 0
        self.failures: list[str] = []
        self.versions: list[str] = []
        self.request = _request(7, 500, covisitation)

    def run(self) -> None:
        client = grpcclient.InferenceServerClient(self.addr)
        history, ids, context, features = self.request
        padded_ids, padded_features = pad_candidates(ids, features)
        inputs = infer_inputs(history, padded_ids, context, padded_features)
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
    loop = _Loop(triton.server.grpc_addr, _covisitation(bundle))
    loop.start()
    try:
        publish(fp32_bundle, 2, triton.repository, MODEL, triton.server.grpc_addr, keep={1})
        both_ready = _ready(triton, "1") and _ready(triton, "2")
        client = grpcclient.InferenceServerClient(triton.server.grpc_addr)
        upgraded = client.infer(MODEL, infer_inputs(*loop.request)).as_numpy(SCORES)
        # The loop must have been answered by version 2 before it goes: on a busy machine
        # its thread may not have made a call in the few milliseconds since the load.
        give_up = time.monotonic() + 10
        while loop.versions[-1:] != ["2"] and time.monotonic() < give_up:
            time.sleep(0.01)
        publish(bundle, 1, triton.repository, MODEL, triton.server.grpc_addr)
        rolled_back = client.infer(MODEL, infer_inputs(*loop.request))
        client.close()
    finally:
        loop.stop.set()
        loop.join()
    assert loop.failures == []
    assert loop.calls > 10
    assert both_ready  # the kept version stays loaded beside the new one
    assert loop.versions == ["1", "2", "1"]  # unnamed requests go to the newest loaded
    np.testing.assert_allclose(
        upgraded, OnnxRanker(fp32_bundle / RANKER_INT8).scores(loop.request), rtol=0, atol=1e-5
    )
    assert str(rolled_back.get_response().model_version) == "1"
    assert published_versions(triton.repository / MODEL) == [1]


def _ready(served: Served, version: str) -> bool:
    client = grpcclient.InferenceServerClient(served.server.grpc_addr)
    try:
        return bool(client.is_model_ready(MODEL, version))
    finally:
        client.close()


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
