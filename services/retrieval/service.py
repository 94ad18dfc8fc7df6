"""Retrieval logic: the four sources, per-source quotas, exclusions.

A request reads the serving model once (see :class:`~services.retrieval.snapshots.ModelSlot`)
and uses it to the end. With a model and a history the user gets ANN (user tower over
the recent products, then the item index), co-visitation and content neighbours of the
newest recent products, and popularity overall and in their top-level categories; a
user without history (or any call while no model is loaded) gets popularity plus
content neighbours of the popular products of their categories. Every candidate is
then checked in one query: active, in stock, not purchased, not excluded, inside the
request's filter.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from opentelemetry import trace

from magpie.contract.signature import FIRST_ITEM_INDEX
from magpie.runtime.errors import NotFound
from magpie.runtime.filters import ProductFilter
from magpie.runtime.metrics import CANDIDATES
from magpie.runtime.telemetry import ATTR
from services.retrieval import config
from services.retrieval.merge import Candidates, first_occurrences, merge, proposed_ids
from services.retrieval.model import Neighbours, ServingModel
from services.retrieval.snapshots import Refreshed

__all__ = [
    "Popularity",
    "ProfileReader",
    "Ranked",
    "RetrievalService",
    "RetrievalStorage",
    "RetrieveQuery",
    "Retrieved",
    "UserHistory",
]


@dataclass(frozen=True, slots=True)
class Ranked:
    """Product ids (object array) with scores, best first."""

    product_ids: NDArray[Any]
    scores: NDArray[Any]


@dataclass(frozen=True, slots=True)
class Popularity:
    overall: Ranked
    by_category: Mapping[str, Ranked]
    """Per top-level category."""


@dataclass(frozen=True, slots=True)
class UserHistory:
    recent: tuple[str, ...] = ()
    """Recent products, newest first."""
    purchased: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    """Top-level categories the user likes, best first."""


@dataclass(frozen=True, slots=True)
class RetrieveQuery:
    user_id: str
    limit: int = config.DEFAULT_LIMIT
    where: ProductFilter = field(default_factory=ProductFilter)
    quotas: Mapping[int, int] = field(default_factory=dict)
    """Per source, overriding the defaults (``config.DEFAULT_QUOTAS`` / ``COLD_QUOTAS``)."""
    recent: tuple[str, ...] | None = None
    """The caller's recent products, newest first; None to read the profile."""


@dataclass(frozen=True, slots=True)
class Retrieved:
    candidates: Candidates
    model_version: str


class RetrievalStorage(Protocol):
    async def popularity(self) -> Popularity: ...
    async def top_categories(self, product_ids: Sequence[str]) -> dict[str, str]: ...
    async def eligible(
        self, product_ids: Sequence[str], where: ProductFilter, excluded: Sequence[str]
    ) -> list[str]: ...


class ProfileReader(Protocol):
    async def history(self, user_id: str) -> UserHistory | None:
        """The user's history; None when the profile service cannot answer."""
        ...


class ModelSource(Protocol):
    @property
    def current(self) -> ServingModel | None: ...


class RetrievalService:
    def __init__(
        self, storage: RetrievalStorage, profiles: ProfileReader, models: ModelSource
    ) -> None:
        self._storage = storage
        self._profiles = profiles
        self._models = models
        self._popularity = Refreshed(storage.popularity, config.POPULARITY_TTL_SECONDS)

    async def retrieve(self, query: RetrieveQuery) -> Retrieved:
        model = self._models.current
        if query.recent is not None:
            history = UserHistory(recent=query.recent)
        else:
            history = await self._profiles.history(query.user_id) or UserHistory()
        rows = model.rows(list(history.recent)) if model is not None else np.empty(0, np.int64)
        anchors = _unique(rows[rows >= FIRST_ITEM_INDEX])[: config.ANCHORS]
        warm = model is not None and len(anchors) > 0
        quotas: dict[int, int] = {
            **(config.DEFAULT_QUOTAS if warm else config.COLD_QUOTAS),
            **query.quotas,
        }
        want = _proposals(quotas)

        categories = asyncio.create_task(self._categories(history))
        lists: list[Candidates] = []
        if model is not None and warm:
            lists += await asyncio.to_thread(_personal, model, rows, anchors, want)
        popular = _popular(
            await self._popularity.get(), await categories, want.get(config.POPULAR, 0)
        )
        lists.append(popular)
        if model is not None and not warm and want.get(config.CONTENT, 0):
            lists.append(await asyncio.to_thread(_cold_content, model, popular, want))
        lists.sort(key=lambda c: config.SOURCE_ORDER.index(int(c.sources[0])) if len(c) else 0)

        excluded = sorted({*history.purchased, *query.where.exclude_product_ids})
        allowed = await self._storage.eligible(proposed_ids(lists), query.where, excluded)
        merged = merge(lists, quotas, query.limit, allowed)
        _observe(merged)
        return Retrieved(merged, model.version if model else "")

    async def similar(
        self,
        product_id: str,
        limit: int,
        sources: Collection[int] = config.NEIGHBOUR_SOURCES,
    ) -> Retrieved:
        """Neighbours of one product from `sources` (of ``config.NEIGHBOUR_SOURCES``: item
        vectors, co-visitation, text); popular in its category, whatever `sources`, when
        the model does not know it."""
        model = self._models.current
        want = math.ceil(limit * config.OVERFETCH)
        row = model.positions.get(product_id) if model is not None else None
        if model is not None and row is not None:
            lists = await asyncio.to_thread(_similar, model, row, want, sources)
        else:
            categories = await self._storage.top_categories([product_id])
            if product_id not in categories:
                raise NotFound(f"product {product_id!r} not found")
            lists = [_popular(await self._popularity.get(), [categories[product_id]], want)]
        quotas = {int(c.sources[0]): limit for c in lists if len(c)}
        allowed = await self._storage.eligible(proposed_ids(lists), ProductFilter(), [product_id])
        return Retrieved(merge(lists, quotas, limit, allowed), model.version if model else "")

    async def _categories(self, history: UserHistory) -> list[str]:
        """Top-level categories for popularity: the profile's, then the recent products'."""
        recent = history.recent[: config.ANCHORS]
        found = await self._storage.top_categories(recent) if recent else {}
        ordered = [*history.categories, *(found[p] for p in recent if p in found)]
        return [c for c in dict.fromkeys(ordered) if c][: config.POPULAR_CATEGORIES]


_SOURCE_NAMES = {
    config.ANN: "ann",
    config.COVISITATION: "covisitation",
    config.CONTENT: "content",
    config.POPULAR: "popular",
}


def _observe(found: Candidates) -> None:
    """Candidates per source, as metrics and on the request's span."""
    counts = dict(zip(*np.unique(found.sources, return_counts=True), strict=True))
    span = trace.get_current_span()
    for source, name in _SOURCE_NAMES.items():
        count = int(counts.get(source, 0))
        CANDIDATES.labels(source=name).observe(count)
        if span.is_recording():
            span.set_attribute(ATTR.candidates_from(name), count)


def _proposals(quotas: Mapping[int, int]) -> dict[int, int]:
    """How many candidates each source proposes: its quota with a margin for exclusions,
    plus what the sources before it may claim first (dedupe)."""
    want, claimed = {}, 0
    for source in config.SOURCE_ORDER:
        quota = max(quotas.get(source, 0), 0)
        want[source] = math.ceil(quota * config.OVERFETCH) + claimed if quota else 0
        claimed += quota
    return want


def _unique(rows: NDArray[Any]) -> NDArray[Any]:
    """Distinct values in first-seen order."""
    _, first = np.unique(rows, return_index=True)
    unique: NDArray[np.int64] = rows[np.sort(first)]
    return unique


def _anchor_weights(count: int) -> NDArray[Any]:
    return np.power(config.ANCHOR_DECAY, np.arange(count), dtype=np.float32)


def _labelled(model: ServingModel, source: int, found: Neighbours, anchored: bool) -> Candidates:
    anchors = model.item_ids[found.anchors] if anchored else None
    return Candidates.of(source, model.item_ids[found.rows], found.scores, anchors)


def _personal(
    model: ServingModel, rows: NDArray[Any], anchors: NDArray[Any], want: Mapping[int, int]
) -> list[Candidates]:
    """ANN, co-visitation and content candidates for a user with history (CPU-bound)."""
    weights = _anchor_weights(len(anchors))
    out = []
    if want.get(config.ANN, 0):
        found = model.nearest(model.user_vector(rows), want[config.ANN], np.empty(0, np.int64))
        out.append(_labelled(model, config.ANN, found, anchored=False))
    if want.get(config.COVISITATION, 0):
        found = model.covisited(anchors, weights, want[config.COVISITATION])
        out.append(_labelled(model, config.COVISITATION, found, anchored=True))
    if want.get(config.CONTENT, 0):
        n = config.CONTENT_ANCHORS
        found = model.similar_texts(anchors[:n], weights[:n], want[config.CONTENT])
        out.append(_labelled(model, config.CONTENT, found, anchored=True))
    return out


def _cold_content(model: ServingModel, popular: Candidates, want: Mapping[int, int]) -> Candidates:
    """Content neighbours of the most popular products the model knows (cold start)."""
    rows = model.rows(popular.product_ids.tolist())
    anchors = rows[rows >= FIRST_ITEM_INDEX][: config.CONTENT_ANCHORS]
    found = model.similar_texts(anchors, _anchor_weights(len(anchors)), want[config.CONTENT])
    return _labelled(model, config.CONTENT, found, anchored=True)


def _similar(
    model: ServingModel, row: int, want: int, sources: Collection[int]
) -> list[Candidates]:
    """Neighbours of the product at `row` from each of `sources`, in priority order."""
    anchor, weight = np.array([row]), np.ones(1)
    out = []
    if config.ANN in sources:
        out.append(_labelled(model, config.ANN, model.similar_items(row, want), True))
    if config.COVISITATION in sources:
        found = model.covisited(anchor, weight, want)
        out.append(_labelled(model, config.COVISITATION, found, True))
    if config.CONTENT in sources:
        found = model.similar_texts(anchor, weight, want)
        out.append(_labelled(model, config.CONTENT, found, True))
    return out


def _popular(popularity: Popularity, categories: Sequence[str], want: int) -> Candidates:
    """Round-robin over the categories' popular lists and the overall one, deduplicated.

    The first ``want`` distinct products of the round-robin lie in its first turns: the
    lists are read ``turns`` deep, that depth doubled only when too few distinct products
    came out (each list is ``want`` long at most, as before), so that with several lists
    each is read a fraction as deep.
    """
    lists = [popularity.by_category[c] for c in categories if c in popularity.by_category]
    lists.append(popularity.overall)
    longest = min(max(len(r.product_ids) for r in lists), want)
    turns = math.ceil(want / len(lists))
    while True:
        turns = min(turns, longest)
        ids = np.concatenate([r.product_ids[:turns] for r in lists])
        scores = np.concatenate([r.scores[:turns] for r in lists])
        turn = np.concatenate([np.arange(len(r.product_ids[:turns])) for r in lists])
        order = np.argsort(turn, kind="stable")
        chosen = order[first_occurrences(ids[order])][:want]
        if len(chosen) == want or turns == longest:
            return Candidates.of(config.POPULAR, ids[chosen], scores[chosen])
        turns *= 2
