"""Recommend and Rank: profile -> candidates -> features -> ranker -> business rules.

Every dependency may fail. Each failure is caught here, recorded as a
`Degradation` on the answer, and replaced by the best fallback: a new-user
profile, the last known popular products, id-only rules, retrieval order.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Protocol

import numpy as np
from opentelemetry import trace

from magpie.runtime.errors import DeadlineExceeded, FieldViolation, InvalidArgument, Unavailable
from magpie.runtime.filters import ProductFilter
from magpie.runtime.metrics import ANSWERS, DEGRADED
from magpie.runtime.telemetry import ATTR, hashed_user
from magpie.runtime.units import SECONDS_PER_DAY
from services.ranking import config
from services.ranking.domain import (
    Candidate,
    Degradation,
    Floats,
    Ids,
    Product,
    RankedItem,
    Recommendation,
    Source,
    UserState,
)
from services.ranking.model import ServingModel
from services.ranking.rules import allowed, diversify, reason_for

__all__ = [
    "CandidateSource",
    "Catalog",
    "ModelProvider",
    "ProfileSource",
    "RankingService",
    "RequestOptions",
    "Scorer",
]

logger = logging.getLogger(__name__)

_DEPENDENCY_ERRORS = (Unavailable, DeadlineExceeded, TimeoutError, OSError)
"""What a failing dependency raises: replaced by a fallback and recorded. Anything else
propagates, e.g. the `InvalidArgument` a dependency found in the caller's own fields."""


class ProfileSource(Protocol):
    async def get(self, user_id: str) -> UserState: ...


class CandidateSource(Protocol):
    async def retrieve(
        self, user: UserState, limit: int, request_filter: ProductFilter
    ) -> tuple[list[Candidate], str]: ...


class Catalog(Protocol):
    async def products(self, product_ids: Sequence[str], *, cached: bool) -> dict[str, Product]:
        """The active products among ``product_ids``; ``cached``: facts up to
        ``config.PRODUCT_CACHE_SECONDS`` old will do (Recommend's candidates, whose
        availability retrieval checked)."""
        ...


class Scorer(Protocol):
    async def score(
        self, model: ServingModel, history: Ids, candidates: Ids, context: Floats, features: Floats
    ) -> Floats: ...


class ModelProvider(Protocol):
    @property
    def current(self) -> ServingModel | None: ...

    def held(self, version: int) -> ServingModel | None:
        """The loaded model of ``version`` (champion, previous or staged), else None."""
        ...


@dataclass(frozen=True, slots=True)
class RequestOptions:
    k: int = config.DEFAULT_K
    request_filter: ProductFilter = field(default_factory=ProductFilter)
    max_per_category: int = 0
    diversity: float = 0.0
    device: str = ""
    request_time: float | None = None
    model_version: int | None = None
    """Rank with this held version instead of the champion (None: the champion)."""


class RankingService:
    def __init__(
        self,
        profiles: ProfileSource,
        retrieval: CandidateSource,
        catalog: Catalog,
        scorer: Scorer,
        models: ModelProvider,
    ) -> None:
        self._profiles = profiles
        self._retrieval = retrieval
        self._catalog = catalog
        self._scorer = scorer
        self._models = models
        self._popular: list[Candidate] = []
        """Last popular candidates retrieval returned: the fallback when it is down."""

    async def recommend(self, user_id: str, options: RequestOptions) -> Recommendation:
        started = time.perf_counter()
        model = self._model(options.model_version)
        degradations: list[Degradation] = []
        user = await self._user(user_id, degradations)
        try:
            candidates, retrieval_version = await self._retrieval.retrieve(
                user, config.CANDIDATES, options.request_filter
            )
            self._remember_popular(candidates)
        except _DEPENDENCY_ERRORS as error:
            logger.warning("retrieval failed, falling back to popular: %s", error)
            degradations.append(Degradation.RETRIEVAL_UNAVAILABLE)
            candidates, retrieval_version = list(self._popular), ""
        result = await self._rank(
            model, user, candidates, options, degradations, retrieval_version, cached=True
        )
        _observe("Recommend", user_id, options, candidates, result, started)
        return result

    async def rank(
        self, user_id: str, product_ids: Sequence[str], options: RequestOptions
    ) -> Recommendation:
        started = time.perf_counter()
        model = self._model(options.model_version)
        degradations: list[Degradation] = []
        user = await self._user(user_id, degradations)
        unique = list(dict.fromkeys(product_ids))
        candidates = [
            Candidate(pid, float(len(unique) - i), Source.CALLER) for i, pid in enumerate(unique)
        ]
        result = await self._rank(model, user, candidates, options, degradations, "", cached=False)
        _observe("Rank", user_id, options, candidates, result, started)
        return result

    def _model(self, version: int | None) -> ServingModel | None:
        """The champion, or the held ``version`` a caller asked for (checked before any
        work: a version this replica does not hold is the caller's mistake)."""
        if version is None:
            return self._models.current
        model = self._models.held(version)
        if model is None:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "model_version",
                        f"version {version} is not held by the service (only the champion,"
                        " previous and staged versions are)",
                    )
                ]
            )
        return model

    async def _user(self, user_id: str, degradations: list[Degradation]) -> UserState:
        try:
            return await self._profiles.get(user_id)
        except _DEPENDENCY_ERRORS as error:
            logger.warning("profile failed, treating the user as new: %s", error)
            degradations.append(Degradation.PROFILE_UNAVAILABLE)
            return UserState(user_id)

    def _remember_popular(self, candidates: Sequence[Candidate]) -> None:
        popular = [c for c in candidates if c.source is Source.POPULAR]
        if popular:
            self._popular = popular[: config.FALLBACK_POPULAR]

    async def _rank(
        self,
        model: ServingModel | None,
        user: UserState,
        candidates: list[Candidate],
        options: RequestOptions,
        degradations: list[Degradation],
        retrieval_version: str,
        *,
        cached: bool,
    ) -> Recommendation:
        """Scores ``candidates`` with ``model`` (retrieval order if the ranker fails),
        applies the business rules to the best-scored ones and explains what was picked
        (``cached``: with product facts from ranking's cache, see `Catalog`)."""
        scores = await self._scores(model, user, candidates, options)
        if scores is None:
            degradations.append(Degradation.RANKER_UNAVAILABLE)
            scores = np.arange(len(candidates), 0, -1, dtype=np.float32)  # retrieval order
        embeddings = (
            model.text_rows([c.product_id for c in candidates])
            if model and options.diversity > 0
            else None
        )
        picked, products = await self._pick(
            user, candidates, scores, embeddings, options, degradations, cached
        )
        items = _explained(picked, candidates, scores, products, user, options)
        version = (
            model.version_name
            if model and Degradation.RANKER_UNAVAILABLE not in degradations
            else retrieval_version
        )
        return Recommendation(uuid.uuid4().hex, version, items, degradations)

    async def _pick(
        self,
        user: UserState,
        candidates: Sequence[Candidate],
        scores: Floats,
        embeddings: Floats | None,
        options: RequestOptions,
        degradations: list[Degradation],
        cached: bool,
    ) -> tuple[list[int], dict[str, Product]]:
        """The positions of the ``options.k`` candidates to show, best first, and the product
        data fetched for them (empty when the catalog failed).

        Product data is needed only for the best-scored slice: a pool a few times k is
        fetched first, and widened only when the rules leave too few items.
        """
        ranked: list[int] = np.argsort(-scores, kind="stable").tolist()
        products: dict[str, Product] | None = {}
        pool = max(config.RULES_POOL, config.RULES_POOL_PER_ITEM * options.k)
        while True:
            window = ranked[:pool]
            if products is not None:
                wanted = {candidates[i].product_id for i in window}
                wanted |= {candidates[i].anchor_product_id for i in window} - {""}
                fetched = await self._products(
                    sorted(wanted - products.keys()), degradations, cached
                )
                products = None if fetched is None else {**products, **fetched}
            known = products if products is not None else {}
            keep = [
                i
                for i in window
                if allowed(
                    known.get(candidates[i].product_id)
                    if products is not None
                    else _unknown(candidates[i]),
                    user,
                    options.request_filter,
                )
            ]
            categories = [""] * len(candidates)  # only the window's are read
            for i in window:
                product = known.get(candidates[i].product_id)
                categories[i] = product.top_category if product else ""
            picked = diversify(
                keep,
                scores,
                categories,
                embeddings,
                k=options.k,
                diversity=options.diversity,
                max_per_category=options.max_per_category,
            )
            if len(picked) >= options.k or pool >= len(ranked):
                return picked, known
            pool *= 2

    async def _products(
        self, product_ids: Sequence[str], degradations: list[Degradation], cached: bool
    ) -> dict[str, Product] | None:
        try:
            return await self._catalog.products(product_ids, cached=cached)
        except _DEPENDENCY_ERRORS as error:
            logger.warning("catalog failed, applying id-only rules: %s", error)
            degradations.append(Degradation.FEATURES_UNAVAILABLE)
            return None

    async def _scores(
        self,
        model: ServingModel | None,
        user: UserState,
        candidates: Sequence[Candidate],
        options: RequestOptions,
    ) -> Floats | None:
        if model is None or not candidates:
            return None
        now = options.request_time or time.time()
        history, candidate_ids, context, features = model.inputs(
            user.recent_product_ids,
            [c.product_id for c in candidates],
            now,
            user.last_event_at,
            options.device,
        )
        try:
            return await self._scorer.score(model, history, candidate_ids, context, features)
        except _DEPENDENCY_ERRORS as error:
            logger.warning("ranker failed, keeping retrieval order: %s", error)
            return None


def _observe(
    method: str,
    user_id: str,
    options: RequestOptions,
    candidates: Sequence[Candidate],
    result: Recommendation,
    started: float,
) -> None:
    """The answer on the request's span, in the metrics and in one log line: a caller who
    holds the ``recommendation_id`` finds the trace (the line carries its trace id)."""
    counts = Counter(map(attrgetter("source"), candidates))  # by source, counted in C
    sources = {source.name.lower(): count for source, count in counts.items()}
    reasons = [d.name.lower() for d in result.degradations]
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(
            {
                ATTR.USER: hashed_user(user_id),
                ATTR.K: options.k,
                ATTR.RECOMMENDATION_ID: result.recommendation_id,
                ATTR.MODEL_VERSION: result.model_version,
                ATTR.DEGRADATIONS: reasons,
                ATTR.CANDIDATES: len(candidates),
                **{ATTR.candidates_from(name): count for name, count in sources.items()},
            }
        )
    ANSWERS.labels(method=method).inc()
    for reason in reasons:
        DEGRADED.labels(reason=reason).inc()
    logger.info(
        "%s answered: recommendation %s, user %s, model %s, %d items, degraded %s, %.1f ms",
        method,
        result.recommendation_id,
        hashed_user(user_id),
        result.model_version or "-",
        len(result.items),
        ",".join(reasons) or "no",
        (time.perf_counter() - started) * 1000.0,
    )


def _explained(
    picked: Sequence[int],
    candidates: Sequence[Candidate],
    scores: Floats,
    products: Mapping[str, Product],
    user: UserState,
    options: RequestOptions,
) -> list[RankedItem]:
    """The picked candidates as answered items, each with its score and reason."""
    now = options.request_time or time.time()
    titles = {pid: p.title for pid, p in products.items()}
    return [
        RankedItem(
            candidates[i].product_id,
            float(scores[i]),
            candidates[i].source,
            reason_for(
                candidates[i],
                products.get(candidates[i].product_id),
                user,
                titles,
                now,
                config.NEW_PRODUCT_DAYS * SECONDS_PER_DAY,
            ),
        )
        for i in picked
    ]


def _unknown(candidate: Candidate) -> Product:
    """Stand-in when the catalog is down: retrieval already dropped inactive products."""
    return Product(candidate.product_id, "", (), "", "", 0, 1, True, 0.0)
