"""ModelService's logic: the registry's versions, aliases and promotion log as one view, and
how each model version did online, counted from the events attributed to it.

Online rates are proportions of impressions with 95% Wilson score intervals: unlike the
normal approximation they stay inside [0, 1] and stay honest for the small counts a new
version starts with (0 clicks in 100 impressions is [0, 0.037], not [0, 0]). A click is an
event of type CLICK only; a LIKE is an opinion about a product, not the click a
click-through rate counts.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from magpie.modelstore.registry import ALIASES, Alias, ModelVersion, Promotion
from services.feedback import config

__all__ = [
    "Z_95",
    "Check",
    "ModelHistory",
    "ModelStorage",
    "ModelsService",
    "OnlineCounts",
    "Rate",
    "RegistryRead",
    "Verdict",
    "VersionView",
    "flatten_metrics",
    "version_order",
    "version_views",
    "wilson",
]

Z_95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95% interval."""


@dataclass(frozen=True, slots=True)
class Rate:
    """A proportion and its 95% Wilson score interval."""

    value: float
    low: float
    high: float


def wilson(successes: int, trials: int, z: float = Z_95) -> Rate:
    """``successes / trials`` with its Wilson score interval; all 0 without trials.

    More successes than trials (clicks whose impressions the caller never recorded) are
    capped at the trials, the value included: a proportion above 1 has no interval, and
    a rate of 1 with its interval says "every impression converted" without inventing more.
    """
    if trials <= 0:
        return Rate(0.0, 0.0, 0.0)
    p = min(max(successes, 0), trials) / trials
    spread = z * z / trials
    centre = (p + spread / 2) / (1 + spread)
    half = z * math.sqrt(p * (1 - p) / trials + spread / (4 * trials)) / (1 + spread)
    return Rate(p, max(0.0, centre - half), min(1.0, centre + half))


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric leaves of nested ``metrics`` by dotted path (``{"candidate": {"NDCG@10":
    0.3}}`` -> ``{"candidate.NDCG@10": 0.3}``); booleans, text and lists are left out."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, f"{path}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[path] = float(value)
    return flat


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    passed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    reason: str
    checks: tuple[Check, ...]


def _verdict(stored: Mapping[str, Any] | None) -> Verdict | None:
    """The gate's verdict as the registry stores it (magpie.retraining.gate.decide: its
    checks name themselves under "check"); None for a version the gate has not judged."""
    if stored is None:
        return None
    checks = tuple(
        Check(str(c.get("check", "")), bool(c.get("passed", False)), str(c.get("reason", "")))
        for c in stored.get("checks", ())
        if isinstance(c, Mapping)
    )
    return Verdict(bool(stored.get("accepted", False)), str(stored.get("reason", "")), checks)


@dataclass(frozen=True, slots=True)
class VersionView:
    """One registered version as ModelService answers it."""

    version: int
    status: str
    aliases: tuple[Alias, ...]
    """In ALIASES order: champion, previous, staged."""
    offline_metrics: dict[str, float]
    verdict: Verdict | None
    created_at: datetime.datetime
    run_id: str
    """Empty for a version registered by hand."""


def version_views(
    versions: Sequence[ModelVersion], aliases: Mapping[Alias, int]
) -> list[VersionView]:
    """The registry's rows with the aliases naming each, flattened metrics and verdicts."""
    return [
        VersionView(
            row.version,
            row.status,
            tuple(alias for alias in ALIASES if aliases.get(alias) == row.version),
            flatten_metrics(row.metrics),
            _verdict(row.verdict),
            row.created_at,
            row.run_id or "",
        )
        for row in versions
    ]


@dataclass(frozen=True, slots=True)
class RegistryRead:
    """What the registry holds for one model, read in one snapshot."""

    versions: list[ModelVersion]
    """The newest ones, newest first."""
    aliases: dict[Alias, int]
    promotions: list[Promotion]
    """The newest ones, newest first."""


@dataclass(frozen=True, slots=True)
class ModelHistory:
    model_name: str
    versions: list[VersionView]
    promotions: list[Promotion]


@dataclass(frozen=True, slots=True)
class OnlineCounts:
    """Events attributed to one model version (``Event.model_version``)."""

    model_version: str
    impressions: int
    clicks: int
    add_to_carts: int
    purchases: int

    @property
    def click_through_rate(self) -> Rate:
        return wilson(self.clicks, self.impressions)

    @property
    def add_to_cart_rate(self) -> Rate:
        return wilson(self.add_to_carts, self.impressions)

    @property
    def purchase_rate(self) -> Rate:
        return wilson(self.purchases, self.impressions)


def version_order(model_version: str) -> tuple[int, int, str]:
    """Sort key of model versions: integer names numerically ("2" before "10"), then any
    other names as text."""
    if model_version.isascii() and model_version.isdigit():
        return (0, int(model_version), model_version)
    return (1, 0, model_version)


class ModelStorage(Protocol):
    async def registry(self, model_name: str, limit: int) -> RegistryRead:
        """The newest ``limit`` versions and promotions of ``model_name`` and its aliases."""
        ...

    async def online_counts(
        self, since: datetime.datetime, model_versions: Sequence[str]
    ) -> list[OnlineCounts]:
        """Impressions, clicks, add-to-carts and purchases per model version of the events
        that occurred at or after ``since``, for ``model_versions`` (every attributed
        version when empty); versions without such events are left out."""
        ...


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class ModelsService:
    def __init__(
        self, storage: ModelStorage, clock: Callable[[], datetime.datetime] = _now
    ) -> None:
        self._storage = storage
        self._clock = clock

    async def history(self, model_name: str, limit: int) -> ModelHistory:
        """The newest ``limit`` versions of ``model_name`` and its newest ``limit``
        promotions."""
        read = await self._storage.registry(model_name, limit)
        return ModelHistory(model_name, version_views(read.versions, read.aliases), read.promotions)

    async def online(
        self, since: datetime.datetime | None, model_versions: Sequence[str]
    ) -> list[OnlineCounts]:
        """Counts per model version since ``since`` (the last ONLINE_METRICS_DAYS when
        None), ordered by version."""
        if since is None:
            since = self._clock() - datetime.timedelta(days=config.ONLINE_METRICS_DAYS)
        counts = await self._storage.online_counts(since, list(dict.fromkeys(model_versions)))
        return sorted(counts, key=lambda c: version_order(c.model_version))
