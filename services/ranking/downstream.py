"""Adapters to the services and the Triton model the ranking service calls.

Each adapter converts protobuf to the ranking domain, bounds its hop with a time
budget (the incoming deadline shortens it further, see magpie.runtime.deadline)
and sits behind a circuit breaker so a dependency that is down costs nothing.

The breakers are shared by every caller, so they count only the dependency's own
faults (:func:`magpie.runtime.breaker.dependency_error`): a request it refuses as
invalid, a caller's deadline shorter than the hop's budget and a caller hanging up
count nothing, and what ranking forwards is kept within the dependency's limits, so
no caller can open a breaker for the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from itertools import repeat
from operator import attrgetter
from typing import Any

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from magpie.modelstore.client import RankerClient
from magpie.runtime.breaker import (
    CircuitBreaker,
    DependencyDown,
    dependency_error,
    is_dependency_down,
)
from magpie.runtime.deadline import remaining_seconds
from magpie.runtime.errors import DeadlineExceeded, FieldViolation, InvalidArgument, MagpieError
from magpie.runtime.filters import MAX_FILTER_VALUES, ProductFilter, filter_to_proto
from magpie.runtime.metrics import CACHE_REQUESTS, timed_hop
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
from services.ranking.product_cache import ProductCache

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
_CANDIDATE_FIELDS = attrgetter("product_id", "score", "source", "anchor_product_id")
_candidate = partial(tuple.__new__, Candidate)
"""Builds a `Candidate` from a 4-tuple without a Python-level call (``Candidate(...)`` runs
the generated ``__new__``): with ``map`` the 500 candidates of a reply convert in C."""


_STATUS_DETAILS = "grpc-status-details-bin"


def _breaker(name: str) -> CircuitBreaker:
    return CircuitBreaker(
        name,
        failure_threshold=config.BREAKER_FAILURES,
        reset_seconds=config.BREAKER_RESET_SECONDS,
        counts=is_dependency_down,
    )


def _under(field: str, roots: Sequence[str]) -> bool:
    return any(field == r or field.startswith((f"{r}.", f"{r}[")) for r in roots)


def _refused(name: str, error: grpc.aio.AioRpcError, caller_fields: Sequence[str]) -> MagpieError:
    """The error for a dependency's INVALID_ARGUMENT.

    When every field it names is one the caller sent as is (same path in the caller's
    request), the caller gets its own `InvalidArgument` with those violations. Otherwise
    ranking built a request the dependency refuses: a plain `Unavailable` that degrades
    the answer. Neither counts toward the breaker.
    """
    violations: list[FieldViolation] = []
    raw = dict(error.trailing_metadata() or ()).get(_STATUS_DETAILS)
    if isinstance(raw, bytes):
        for detail in status_pb2.Status.FromString(raw).details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
    if violations and all(_under(v.field, caller_fields) for v in violations):
        return InvalidArgument(violations)
    return dependency_error(name, error.code(), error.details() or "", budget_bound=False)


async def _call(
    breaker: CircuitBreaker,
    method: Callable[..., Any],
    request: Message,
    budget: float,
    caller_fields: Sequence[str] = (),
) -> Any:
    """One unary call through the breaker within the hop's ``budget`` seconds (the channel
    cuts it to what is left of the caller's deadline).

    A failed call raises what :func:`~magpie.runtime.breaker.dependency_error` says, so
    only `DependencyDown` (the dependency's fault) counts: a DEADLINE_EXCEEDED counts only
    when the hop's budget, not the caller's deadline, was the tighter bound. An
    INVALID_ARGUMENT is :func:`_refused`; ``caller_fields`` are the request's fields that
    carry the caller's own values under the caller's field names.
    """
    left = remaining_seconds()
    budget_bound = left is None or budget <= left

    async def attempt() -> Any:
        try:
            with timed_hop(breaker.name):
                return await method(request, timeout=budget)
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code is grpc.StatusCode.INVALID_ARGUMENT:
                raise _refused(breaker.name, error, caller_fields) from error
            details = error.details() or ""
            raise dependency_error(
                breaker.name, code, details, budget_bound=budget_bound
            ) from error

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
            self._breaker,
            self._stub.GetProfile,
            request,
            config.PROFILE_TIMEOUT_SECONDS,
            caller_fields=("user_id",),
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
            disliked=frozenset(profile.disliked_product_ids),
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
            filter=filter_to_proto(
                replace(request_filter, exclude_product_ids=_excluded(user, request_filter))
            ),
            recent_product_ids=user.recent_product_ids,
            columnar=True,
        )

        reply: retrieval_pb2.RetrieveResponse = await _call(
            self._breaker,
            self._stub.Retrieve,
            request,
            config.RETRIEVAL_TIMEOUT_SECONDS,
            caller_fields=("user_id", "filter"),
        )
        return _candidates(reply), reply.model_version


def _candidates(reply: retrieval_pb2.RetrieveResponse) -> list[Candidate]:
    """The reply's candidates as `Candidate` tuples, built in C from its columns (or, from
    a retrieval that predates them, from its messages, column by column)."""
    found: Sequence[Sequence[Any]]
    if reply.HasField("columns"):
        columns = reply.columns
        found = (
            columns.product_ids,
            columns.scores,
            columns.sources,
            columns.anchor_product_ids,
        )
        if len({len(column) for column in found}) > 1:
            raise DependencyDown("retrieval answered columns of different lengths")
    elif reply.candidates:
        found = tuple(zip(*map(_CANDIDATE_FIELDS, reply.candidates), strict=True))
    else:
        return []
    product_ids, scores, sources, anchors = found
    known = map(_SOURCES.get, sources, repeat(Source.UNSPECIFIED))
    return list(map(_candidate, zip(product_ids, scores, known, anchors, strict=True)))


def _excluded(user: UserState, request_filter: ProductFilter) -> tuple[str, ...]:
    """The exclusions sent to retrieval: the caller's, then the user's purchases and
    dislikes (they would only be dropped later: this spares their candidate slots), at most
    the ``MAX_FILTER_VALUES`` retrieval accepts. The caller's fit (the servicer checks them
    against the same limit); purchases and dislikes left out are still dropped by the
    business rules."""
    wanted = dict.fromkeys(
        (*request_filter.exclude_product_ids, *sorted(user.purchased), *sorted(user.disliked))
    )
    return tuple(wanted)[:MAX_FILTER_VALUES]


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
    def __init__(self, channel: grpc.aio.Channel, cache: ProductCache | None = None) -> None:
        self._stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        self._breaker = _breaker("catalog")
        self._cache = cache

    async def products(self, product_ids: Sequence[str], *, cached: bool) -> dict[str, Product]:
        """The active products among ``product_ids``; with ``cached``, fresh ones from the
        cache and only the others from the catalog."""
        if not cached or self._cache is None:
            return await self._fetch(product_ids)
        found, missing = self._cache.split(product_ids)
        CACHE_REQUESTS.labels(namespace="ranking_products", result="hit").inc(len(found))
        CACHE_REQUESTS.labels(namespace="ranking_products", result="miss").inc(len(missing))
        if missing:
            fetched = await self._fetch(missing)
            self._cache.store(fetched)
            found.update(fetched)
        return found

    async def _fetch(self, product_ids: Sequence[str]) -> dict[str, Product]:
        if not product_ids:
            return {}
        request = catalog_pb2.GetProductsRequest(product_ids=product_ids, read_mask=_PRODUCT_FIELDS)

        reply: catalog_pb2.GetProductsResponse = await _call(
            self._breaker, self._stub.GetProducts, request, config.CATALOG_TIMEOUT_SECONDS
        )
        return {p.product_id: _product(p) for p in reply.products}


class GuardedRanker:
    """The Triton ranker behind a breaker, bounded by what is left of the deadline.

    The client raises `DependencyDown` for Triton's faults, an answer that is not one
    finite score per candidate included, so a broken model degrades Recommend to
    retrieval order (and opens the breaker) instead of failing it.
    """

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
                raise DependencyDown(f"ranker answered with version {version}")
            row: Floats = scores[0]
            return row

        return await self._breaker.call(call)
