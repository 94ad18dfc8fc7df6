"""Adapters to the services and the Triton model the ranking service calls.

Each adapter converts protobuf to the ranking domain, bounds its hop with a time
budget (the incoming deadline shortens it further, see magpie.runtime.deadline)
and sits behind a circuit breaker so a dependency that is down costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from magpie.modelstore.client import RankerClient
from magpie.runtime.breaker import CircuitBreaker
from magpie.runtime.deadline import remaining_seconds
from magpie.runtime.errors import DeadlineExceeded, Unavailable
from magpie.runtime.filters import ProductFilter, filter_to_proto
from magpie.runtime.metrics import timed_hop
from magpie.runtime.units import NANOS_PER_UNIT
from magpie.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    profiles_pb2,
    profiles_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
)
from services.ranking import config
from services.ranking.domain import Candidate, Floats, Ids, Product, Source, UserState
from services.ranking.model import ServingModel

__all__ = ["CatalogClient", "GuardedRanker", "ProfileClient", "RetrievalClient"]

_PRODUCT_FIELDS = FieldMask(
    paths=[
        "product_id",
        "title",
        "category_path",
        "brand",
        "price",
        "stock",
        "status",
        "created_at",
    ]
)
"""What business rules and reasons read; leaves out the costly behaviour stats."""
_SOURCES = {int(s): s for s in Source}
"""Wire number -> Source: a dict lookup is cheaper than ``Source(n)`` for 500 candidates."""


def _breaker(name: str) -> CircuitBreaker:
    return CircuitBreaker(
        name, failure_threshold=config.BREAKER_FAILURES, reset_seconds=config.BREAKER_RESET_SECONDS
    )


async def _call(
    breaker: CircuitBreaker, method: Callable[..., Any], request: Message, timeout: float
) -> Any:
    """One unary call through the breaker; gRPC failures become `Unavailable`."""

    async def attempt() -> Any:
        try:
            with timed_hop(breaker.name):
                return await method(request, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise Unavailable(f"{breaker.name}: {error.code().name}: {error.details()}") from error

    return await breaker.call(attempt)


class ProfileClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = profiles_pb2_grpc.ProfileServiceStub(channel)
        self._breaker = _breaker("profiles")

    async def get(self, user_id: str) -> UserState:
        request = profiles_pb2.GetProfileRequest(
            user_id=user_id, history_limit=config.HISTORY_LIMIT
        )

        reply: profiles_pb2.GetProfileResponse = await _call(
            self._breaker, self._stub.GetProfile, request, config.PROFILE_TIMEOUT_SECONDS
        )
        profile = reply.profile
        recent = profile.recent_interactions
        affinities = sorted(
            (a for a in profile.category_affinities if a.window == profiles_pb2.FEATURE_WINDOW_30D),
            key=lambda a: -a.score,
        )
        return UserState(
            user_id=user_id,
            recent_product_ids=tuple(dict.fromkeys(i.product_id for i in recent)),
            last_event_at=recent[0].occurred_at.ToSeconds() if recent else None,
            purchased=frozenset(profile.purchased_product_ids),
            liked_categories=tuple(a.category for a in affinities[:3]),
        )


class RetrievalClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
        self._breaker = _breaker("retrieval")

    async def retrieve(
        self, user: UserState, limit: int, request_filter: ProductFilter
    ) -> tuple[list[Candidate], str]:
        request = retrieval_pb2.RetrieveRequest(
            user_id=user.user_id,
            limit=limit,
            # Purchased products would only be dropped later: spare their candidate slots.
            filter=filter_to_proto(
                replace(
                    request_filter,
                    exclude_product_ids=(*request_filter.exclude_product_ids, *user.purchased),
                )
            ),
            recent_product_ids=user.recent_product_ids,
        )

        reply: retrieval_pb2.RetrieveResponse = await _call(
            self._breaker, self._stub.Retrieve, request, config.RETRIEVAL_TIMEOUT_SECONDS
        )
        source = _SOURCES.get
        candidates = [
            Candidate(
                c.product_id, c.score, source(c.source, Source.UNSPECIFIED), c.anchor_product_id
            )
            for c in reply.candidates
        ]
        return candidates, reply.model_version


def _product(p: catalog_pb2.Product) -> Product:
    price = p.price.units * NANOS_PER_UNIT + p.price.nanos
    return Product(
        product_id=p.product_id,
        title=p.title,
        category_path=tuple(p.category_path),
        brand=p.brand,
        currency_code=p.price.currency_code,
        price_nanos=price,
        stock=p.stock,
        active=p.status
        in (catalog_pb2.PRODUCT_STATUS_ACTIVE, catalog_pb2.PRODUCT_STATUS_UNSPECIFIED),
        created_at=p.created_at.ToSeconds(),
    )


class CatalogClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        self._breaker = _breaker("catalog")

    async def products(self, product_ids: Sequence[str]) -> dict[str, Product]:
        if not product_ids:
            return {}
        request = catalog_pb2.GetProductsRequest(product_ids=product_ids, read_mask=_PRODUCT_FIELDS)

        reply: catalog_pb2.GetProductsResponse = await _call(
            self._breaker, self._stub.GetProducts, request, config.CATALOG_TIMEOUT_SECONDS
        )
        return {p.product_id: _product(p) for p in reply.products}


class GuardedRanker:
    """The Triton ranker behind a breaker, bounded by what is left of the deadline."""

    def __init__(self, client: RankerClient) -> None:
        self._client = client
        self._breaker = _breaker("triton")

    async def score(
        self, model: ServingModel, history: Ids, candidates: Ids, context: Floats, features: Floats
    ) -> Floats:
        left = remaining_seconds()
        if left is not None and left <= 0:
            raise DeadlineExceeded("no time left for the ranker")

        async def call() -> Floats:
            with timed_hop("triton"):
                scores, version = await self._client.score(
                    history, candidates, context, features, version=model.version_name, timeout=left
                )
            if version != model.version_name:
                raise Unavailable(f"ranker answered with version {version}")
            row: Floats = scores[0]
            return row

        return await self._breaker.call(call)
