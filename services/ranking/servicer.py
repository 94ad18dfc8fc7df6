"""gRPC surface of the ranking service: validation and protobuf <-> domain only."""

from __future__ import annotations

import grpc

from magpie.runtime.filters import ProductFilter, check_filter, filter_from_proto
from magpie.runtime.validation import Validators, Violations
from magpie.v1 import common_pb2, ranking_pb2, ranking_pb2_grpc
from services.ranking import config
from services.ranking.domain import Recommendation
from services.ranking.service import RankingService, RequestOptions

__all__ = ["VALIDATORS", "RankingServicer"]

_DEVICES = {
    common_pb2.DEVICE_DESKTOP: "web",
    common_pb2.DEVICE_MOBILE: "mobile",
    common_pb2.DEVICE_TABLET: "mobile",
    common_pb2.DEVICE_APP: "app",
}


_MAX_VERSION_DIGITS = 9
"""Registry versions are PostgreSQL integers: 9 digits always fit."""


def _validate_recommend(request: ranking_pb2.RecommendRequest) -> None:
    v = Violations()
    v.check_id(request.user_id, "user_id")
    v.check_range(request.k, "k", low=0, high=config.MAX_K)
    v.check_range(request.diversity, "diversity", low=0.0, high=1.0)
    v.check(request.max_per_category >= 0, "max_per_category", "must not be negative")
    check_filter(v, request.filter)
    v.check_timestamp(request.context.request_time, "context.request_time")
    version = request.model_version
    if version:
        v.check(
            version.isascii() and version.isdigit() and len(version) <= _MAX_VERSION_DIGITS,
            "model_version",
            f"must be a model version number (1 to {_MAX_VERSION_DIGITS} digits)",
        )
    v.raise_if_any()


def _validate_rank(request: ranking_pb2.RankRequest) -> None:
    v = Violations()
    v.check_id(request.user_id, "user_id")
    v.check_ids(request.product_ids, "product_ids", least=1, most=config.MAX_RANK_IDS)
    v.check_timestamp(request.context.request_time, "context.request_time")
    v.raise_if_any()


VALIDATORS: Validators = {
    ranking_pb2.RecommendRequest: _validate_recommend,
    ranking_pb2.RankRequest: _validate_rank,
}


def _options(
    context: common_pb2.RequestContext,
    *,
    k: int = config.DEFAULT_K,
    request_filter: ProductFilter | None = None,
    max_per_category: int = 0,
    diversity: float = 0.0,
    model_version: str = "",
) -> RequestOptions:
    return RequestOptions(
        k=k,
        request_filter=request_filter or ProductFilter(),
        max_per_category=max_per_category,
        diversity=diversity,
        device=_DEVICES.get(context.device, ""),
        request_time=context.request_time.ToSeconds() if context.HasField("request_time") else None,
        model_version=int(model_version) if model_version else None,
    )


def _items(result: Recommendation) -> list[ranking_pb2.RecommendedItem]:
    return [
        ranking_pb2.RecommendedItem(
            product_id=item.product_id,
            score=item.score,
            source=int(item.source),  # type: ignore[arg-type]
            reason=ranking_pb2.Reason(
                type=int(item.reason.type),  # type: ignore[arg-type]
                text=item.reason.text,
                anchor_product_id=item.reason.anchor_product_id,
                category=item.reason.category,
            ),
            position=position,
        )
        for position, item in enumerate(result.items, start=1)
    ]


class RankingServicer(ranking_pb2_grpc.RankingServiceServicer):
    def __init__(self, service: RankingService) -> None:
        self._service = service

    async def Recommend(
        self, request: ranking_pb2.RecommendRequest, context: grpc.aio.ServicerContext
    ) -> ranking_pb2.RecommendResponse:
        options = _options(
            request.context,
            k=request.k or config.DEFAULT_K,
            request_filter=filter_from_proto(request.filter),
            max_per_category=request.max_per_category,
            diversity=request.diversity,
            model_version=request.model_version,
        )
        result = await self._service.recommend(request.user_id, options)
        return ranking_pb2.RecommendResponse(
            recommendation_id=result.recommendation_id,
            model_version=result.model_version,
            items=_items(result),
            degradations=[int(d) for d in result.degradations],  # type: ignore[misc]
        )

    async def Rank(
        self, request: ranking_pb2.RankRequest, context: grpc.aio.ServicerContext
    ) -> ranking_pb2.RankResponse:
        options = _options(request.context, k=len(request.product_ids))
        result = await self._service.rank(request.user_id, list(request.product_ids), options)
        return ranking_pb2.RankResponse(
            recommendation_id=result.recommendation_id,
            model_version=result.model_version,
            items=_items(result),
            degradations=[int(d) for d in result.degradations],  # type: ignore[misc]
        )
