"""Request validation of the ranking service (found by tools.bench.fuzz: INTERNAL before)."""

from __future__ import annotations

import pytest

from magpie.runtime.errors import InvalidArgument
from magpie.v1 import common_pb2, ranking_pb2
from services.ranking.servicer import VALIDATORS


@pytest.mark.parametrize(("seconds", "nanos"), [(0, -1), (0, 1_000_000_000), (-62_135_596_801, 0)])
@pytest.mark.parametrize(
    "request_",
    [
        ranking_pb2.RecommendRequest(user_id="u1"),
        ranking_pb2.RankRequest(user_id="u1", product_ids=["p1"]),
    ],
)
def test_an_unconvertible_request_time_is_invalid(
    request_: object, seconds: int, nanos: int
) -> None:
    request_.context.CopyFrom(  # type: ignore[attr-defined]
        common_pb2.RequestContext(request_time={"seconds": seconds, "nanos": nanos})
    )

    with pytest.raises(InvalidArgument) as raised:
        VALIDATORS[type(request_)](request_)

    assert [v.field for v in raised.value.violations] == ["context.request_time"]
