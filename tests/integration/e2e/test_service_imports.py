"""Each service process, started as production starts it, never loads training code.

The service images carry no torch: a service that imported it (or sentence-transformers,
or the onnx package) would fail there. `python -X importtime` logs every module a process
imports over its whole life, lazy imports included; each service runs against the
platform's database and model, serves a request, and its import log is checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from magpie.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    feedback_pb2,
    feedback_pb2_grpc,
    profiles_pb2,
    profiles_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
)
from tests.integration.e2e.conftest import Platform
from tests.support import service_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TRAINING_ONLY = {"torch", "sentence_transformers", "onnx"}

REQUESTS: dict[str, Callable[[grpc.Channel], object]] = {
    "profiles": lambda c: profiles_pb2_grpc.ProfileServiceStub(c).GetProfile(
        profiles_pb2.GetProfileRequest(user_id="u000001"), timeout=10
    ),
    "catalog": lambda c: catalog_pb2_grpc.CatalogServiceStub(c).ListProducts(
        catalog_pb2.ListProductsRequest(page_size=5), timeout=10
    ),
    "feedback": lambda c: feedback_pb2_grpc.FeedbackServiceStub(c).RecordEvents(
        feedback_pb2.RecordEventsRequest(events=[feedback_pb2.Event(event_id="x")]), timeout=10
    ),
    "retrieval": lambda c: retrieval_pb2_grpc.RetrievalServiceStub(c).Retrieve(
        retrieval_pb2.RetrieveRequest(user_id="u000001"), timeout=10
    ),
    "ranking": lambda c: _recommend_with_model(ranking_pb2_grpc.RankingServiceStub(c)),
}


def _recommend_with_model(stub: ranking_pb2_grpc.RankingServiceStub) -> None:
    """Until the ranking service answers with its model loaded (it polls the registry)."""
    give_up = time.monotonic() + 30
    request = ranking_pb2.RecommendRequest(user_id="u000001")
    while not stub.Recommend(request, timeout=10).model_version:
        assert time.monotonic() < give_up, "the ranking service never loaded its model"
        time.sleep(0.2)


def _imported(log: str) -> set[str]:
    """Top-level names of the modules in a `-X importtime` log."""
    names = set()
    for line in log.splitlines():
        if line.startswith("import time:") and "|" in line:
            module = line.rsplit("|", 1)[1].strip()
            names.add(module.split(".")[0])
    return names


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_service_process_imports_no_training_code(
    platform: Platform, name: str, tmp_path: Path
) -> None:
    with service_process(
        name, platform.settings, tmp_path, python_options=["-X", "importtime"]
    ) as service:
        with grpc.insecure_channel(service.address) as channel:
            REQUESTS[name](channel)
        log = service.output()

    imported = _imported(log)
    assert "magpie" in imported and "services" in imported  # the log is what we think
    assert not imported & TRAINING_ONLY, sorted(imported & TRAINING_ONLY)
    if name == "retrieval":
        assert "onnxruntime" in imported  # the user tower runs in process (ONNX Runtime)
