"""The ranking API as a caller sees it: only the protos and the platform's ports.

Black-box on purpose: these tests import no Magpie module but the generated protos, so
they hold whatever the code behind the ports looks like. The platform (five services and
Triton from `LocalPlatform`, a trained and promoted model) comes from the package fixture.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator

import grpc
import pytest

from magpie.v1 import common_pb2, ranking_pb2, ranking_pb2_grpc
from tests.integration.e2e.conftest import Platform
from tests.support import field_violations

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

K = 10
DEADLINE_SECONDS = 1.0
"""What the caller gives Recommend while a dependency is down or hung."""
RECOVERY_SECONDS = 45.0


@pytest.fixture
def ranking(platform: Platform) -> Iterator[ranking_pb2_grpc.RankingServiceStub]:
    with grpc.insecure_channel(platform.settings.ranking_addr) as channel:
        yield ranking_pb2_grpc.RankingServiceStub(channel)


def _bad_request(call: Callable[[], object]) -> list[str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return field_violations(raised.value)


def test_recommend_names_every_bad_field(ranking: ranking_pb2_grpc.RankingServiceStub) -> None:
    request = ranking_pb2.RecommendRequest(
        user_id="",
        k=201,
        diversity=1.5,
        max_per_category=-1,
        filter=common_pb2.ProductFilter(
            brands=[" "], min_price=common_pb2.Money(currency_code="eur", units=1)
        ),
    )

    fields = _bad_request(lambda: ranking.Recommend(request, timeout=5))

    assert fields == [
        "user_id",
        "k",
        "diversity",
        "max_per_category",
        "filter.brands[0]",
        "filter.min_price.currency_code",
    ]


def test_rank_names_every_bad_field(ranking: ranking_pb2_grpc.RankingServiceStub) -> None:
    empty = ranking_pb2.RankRequest(user_id="u000001")
    too_many = ranking_pb2.RankRequest(user_id="u000001", product_ids=["p"] * 2001)
    blank = ranking_pb2.RankRequest(user_id="u\x00", product_ids=["p1", ""])

    assert _bad_request(lambda: ranking.Rank(empty, timeout=5)) == ["product_ids"]
    assert _bad_request(lambda: ranking.Rank(too_many, timeout=5)) == ["product_ids"]
    assert _bad_request(lambda: ranking.Rank(blank, timeout=5)) == ["user_id", "product_ids[1]"]


def test_rank_orders_the_callers_candidates(ranking: ranking_pb2_grpc.RankingServiceStub) -> None:
    shown = ranking.Recommend(ranking_pb2.RecommendRequest(user_id="u000003", k=20), timeout=5)
    candidates = [*(item.product_id for item in reversed(shown.items)), "no-such-product"]

    reply = ranking.Rank(
        ranking_pb2.RankRequest(user_id="u000003", product_ids=[*candidates, candidates[0]]),
        timeout=5,
    )

    ranked = [item.product_id for item in reply.items]
    assert sorted(ranked) == sorted(candidates[:-1])  # the unknown product is dropped
    assert [item.position for item in reply.items] == list(range(1, len(ranked) + 1))
    assert [item.score for item in reply.items] == sorted(
        (item.score for item in reply.items), reverse=True
    )
    assert {item.source for item in reply.items} == {common_pb2.CANDIDATE_SOURCE_CALLER}
    assert all(item.reason.text for item in reply.items)
    assert reply.model_version == shown.model_version != ""
    assert not reply.degradations
    assert reply.recommendation_id and reply.recommendation_id != shown.recommendation_id


def _recommend(
    stub: ranking_pb2_grpc.RankingServiceStub, user_id: str = "u000004"
) -> tuple[ranking_pb2.RecommendResponse, float]:
    started = time.monotonic()
    reply = stub.Recommend(
        ranking_pb2.RecommendRequest(user_id=user_id, k=K), timeout=DEADLINE_SECONDS
    )
    return reply, time.monotonic() - started


def _rank(
    stub: ranking_pb2_grpc.RankingServiceStub, product_ids: list[str], user_id: str = "u000004"
) -> tuple[ranking_pb2.RankResponse, float]:
    started = time.monotonic()
    reply = stub.Rank(
        ranking_pb2.RankRequest(user_id=user_id, product_ids=product_ids),
        timeout=DEADLINE_SECONDS,
    )
    return reply, time.monotonic() - started


def _wait_undegraded(stub: ranking_pb2_grpc.RankingServiceStub) -> ranking_pb2.RecommendResponse:
    give_up = time.monotonic() + RECOVERY_SECONDS
    while True:
        reply, _ = _recommend(stub)
        if not reply.degradations or time.monotonic() > give_up:
            return reply
        time.sleep(0.2)


OUTAGES = {
    "profiles": ranking_pb2.DEGRADATION_PROFILE_UNAVAILABLE,
    "retrieval": ranking_pb2.DEGRADATION_RETRIEVAL_UNAVAILABLE,
    "catalog": ranking_pb2.DEGRADATION_FEATURES_UNAVAILABLE,
}


@pytest.mark.parametrize("fault", ["stopped", "hung"])
@pytest.mark.parametrize("dependency", sorted(OUTAGES))
def test_recommend_degrades_within_its_deadline_while_a_dependency_is_out(
    platform: Platform, ranking: ranking_pb2_grpc.RankingServiceStub, dependency: str, fault: str
) -> None:
    """Stopped: the process is gone (connections refused). Hung: SIGSTOP, so connections
    stay open and calls simply never answer, which only time budgets can bound.

    While the catalog is out, Recommend answers this user whole from the product facts
    ranking fetched for the same answer moments before (its cache); Rank, which always
    reads the catalog, is what degrades."""
    healthy = _wait_undegraded(ranking)  # which also warms the fallbacks
    assert not healthy.degradations
    local = platform.local
    pid = local.running()[dependency]
    if fault == "stopped":
        local.stop(dependency)
    else:
        os.kill(pid, signal.SIGSTOP)
    try:
        answers: list[tuple[ranking_pb2.RecommendResponse | ranking_pb2.RankResponse, float]]
        answers = [_recommend(ranking) for _ in range(8)]  # enough to open its breaker
        if dependency == "catalog":
            shown = [item.product_id for item in healthy.items]
            answers = [_rank(ranking, shown) for _ in range(8)] + answers
    finally:
        if fault == "stopped":
            local.up([dependency])
        else:
            os.kill(pid, signal.SIGCONT)

    for reply, seconds in answers:
        if isinstance(reply, ranking_pb2.RecommendResponse) and dependency == "catalog":
            assert not reply.degradations, (fault, reply.degradations)  # from the cache
        else:
            assert OUTAGES[dependency] in reply.degradations, (dependency, fault, reply)
        assert len(reply.items) == K
        assert seconds < DEADLINE_SECONDS
    recovered = _wait_undegraded(ranking)
    assert not recovered.degradations, (dependency, fault, recovered.degradations)
    assert recovered.model_version == healthy.model_version
