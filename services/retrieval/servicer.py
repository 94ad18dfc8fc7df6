"""gRPC surface of the retrieval service: validation and protobuf <-> domain only."""

from __future__ import annotations

import re

import grpc
from magpie.v1 import common_pb2, retrieval_pb2_grpc
from magpie.v1 import retrieval_pb2 as pb

from services.common.validation import Validators, Violations
from services.retrieval import config
from services.retrieval.merge import Candidates
from services.retrieval.service import ProductFilter, RetrievalService, RetrieveQuery

__all__ = ["VALIDATORS", "RetrievalServicer"]

_CURRENCY = re.compile(r"[A-Z]{3}")
_NANOS_PER_UNIT = 1_000_000_000
_QUOTA_SOURCES = (config.ANN, config.COVISITATION, config.POPULAR, config.CONTENT)
_MAX_TEXT = 1000


def _check_money(v: Violations, money: common_pb2.Money, field: str) -> None:
    if not _CURRENCY.fullmatch(money.currency_code):
        v.add(f"{field}.currency_code", "must be a three-letter ISO 4217 code")
    if not 0 <= money.nanos < _NANOS_PER_UNIT:
        v.add(f"{field}.nanos", "must be between 0 and 999999999")
    if money.units < 0:
        v.add(f"{field}.units", "must not be negative")


def _check_texts(v: Violations, values: list[str], field: str) -> None:
    v.check_count(values, field, most=config.MAX_FILTER_VALUES)
    for i, value in enumerate(values):
        if not value.strip() or len(value) > _MAX_TEXT:
            v.add(f"{field}[{i}]", f"must be 1 to {_MAX_TEXT} characters, not blank")


def _check_filter(v: Violations, f: common_pb2.ProductFilter) -> None:
    _check_texts(v, list(f.category_prefixes), "filter.category_prefixes")
    _check_texts(v, list(f.brands), "filter.brands")
    v.check_count(
        f.exclude_product_ids, "filter.exclude_product_ids", most=config.MAX_FILTER_VALUES
    )
    for i, product_id in enumerate(f.exclude_product_ids):
        v.check_id(product_id, f"filter.exclude_product_ids[{i}]")
    for name in ("min_price", "max_price"):
        if f.HasField(name):
            _check_money(v, getattr(f, name), f"filter.{name}")
    if f.HasField("min_price") and f.HasField("max_price"):
        if f.min_price.currency_code != f.max_price.currency_code:
            v.add("filter.max_price.currency_code", "must equal filter.min_price.currency_code")
        elif _nanos(f.min_price) > _nanos(f.max_price):
            v.add("filter.max_price", "must not be below filter.min_price")


def _validate_retrieve(request: pb.RetrieveRequest) -> None:
    v = Violations()
    v.check_id(request.user_id, "user_id")
    v.check_range(request.limit, "limit", low=0, high=config.MAX_LIMIT)
    _check_filter(v, request.filter)
    seen: set[int] = set()
    for i, quota in enumerate(request.quotas):
        if quota.source not in _QUOTA_SOURCES:
            v.add(f"quotas[{i}].source", "must be ANN, COVISITATION, POPULAR or CONTENT")
        elif quota.source in seen:
            v.add(f"quotas[{i}].source", "is given twice")
        seen.add(quota.source)
        v.check_range(
            quota.max_candidates, f"quotas[{i}].max_candidates", low=0, high=config.MAX_LIMIT
        )
    v.check_count(request.recent_product_ids, "recent_product_ids", most=config.MAX_RECENT)
    for i, product_id in enumerate(request.recent_product_ids):
        v.check_id(product_id, f"recent_product_ids[{i}]")
    v.raise_if_any()


def _validate_similar(request: pb.SimilarProductsRequest) -> None:
    v = Violations()
    v.check_id(request.product_id, "product_id")
    v.check_range(request.limit, "limit", low=0, high=config.MAX_SIMILAR)
    v.raise_if_any()


VALIDATORS: Validators = {
    pb.RetrieveRequest: _validate_retrieve,
    pb.SimilarProductsRequest: _validate_similar,
}


def _nanos(money: common_pb2.Money) -> int:
    return money.units * _NANOS_PER_UNIT + money.nanos


def _filter_from_proto(f: common_pb2.ProductFilter) -> ProductFilter:
    bounds = [getattr(f, name) for name in ("min_price", "max_price") if f.HasField(name)]
    return ProductFilter(
        category_prefixes=tuple(f.category_prefixes),
        brands=tuple(f.brands),
        exclude_product_ids=tuple(f.exclude_product_ids),
        currency=bounds[0].currency_code if bounds else "",
        min_price_nanos=_nanos(f.min_price) if f.HasField("min_price") else None,
        max_price_nanos=_nanos(f.max_price) if f.HasField("max_price") else None,
    )


def _candidates_to_proto(found: Candidates) -> list[pb.Candidate]:
    return [
        pb.Candidate(product_id=p, score=s, source=src, anchor_product_id=a)
        for p, s, src, a in zip(
            found.product_ids.tolist(),
            found.scores.tolist(),
            found.sources.tolist(),
            found.anchors.tolist(),
            strict=True,
        )
    ]


class RetrievalServicer(retrieval_pb2_grpc.RetrievalServiceServicer):
    def __init__(self, service: RetrievalService) -> None:
        self._service = service

    async def Retrieve(
        self, request: pb.RetrieveRequest, context: grpc.aio.ServicerContext
    ) -> pb.RetrieveResponse:
        query = RetrieveQuery(
            user_id=request.user_id,
            limit=request.limit or config.DEFAULT_LIMIT,
            where=_filter_from_proto(request.filter),
            quotas={q.source: q.max_candidates for q in request.quotas},
            recent=tuple(request.recent_product_ids) or None,
        )
        found = await self._service.retrieve(query)
        return pb.RetrieveResponse(
            candidates=_candidates_to_proto(found.candidates), model_version=found.model_version
        )

    async def SimilarProducts(
        self, request: pb.SimilarProductsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SimilarProductsResponse:
        found = await self._service.similar(
            request.product_id, request.limit or config.DEFAULT_SIMILAR
        )
        return pb.SimilarProductsResponse(
            candidates=_candidates_to_proto(found.candidates), model_version=found.model_version
        )
