"""Plain records the ranking logic works on, independent of protobuf."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Candidate",
    "Degradation",
    "Floats",
    "Ids",
    "Product",
    "RankedItem",
    "Reason",
    "ReasonType",
    "Recommendation",
    "Source",
    "UserState",
]

Floats = NDArray[np.float32]
"""Scores and embeddings."""
Ids = NDArray[np.int64]
"""Vocabulary indices."""


class Source(IntEnum):
    """Mirrors magpie.v1.CandidateSource."""

    UNSPECIFIED = 0
    ANN = 1
    COVISITATION = 2
    POPULAR = 3
    CONTENT = 4
    CALLER = 5


class ReasonType(IntEnum):
    """Mirrors magpie.v1.ReasonType."""

    UNSPECIFIED = 0
    RELATED_TO_ITEM = 1
    POPULAR = 2
    NEW_IN_CATEGORY = 3
    PERSONALIZED = 4


class Degradation(IntEnum):
    """Mirrors magpie.v1.Degradation."""

    RANKER_UNAVAILABLE = 1
    RETRIEVAL_UNAVAILABLE = 2
    PROFILE_UNAVAILABLE = 3
    FEATURES_UNAVAILABLE = 4


@dataclass(frozen=True, slots=True)
class UserState:
    user_id: str
    recent_product_ids: tuple[str, ...] = ()
    """Newest first."""
    last_event_at: float | None = None
    """Unix seconds of the newest interaction."""
    purchased: frozenset[str] = frozenset()
    disliked: frozenset[str] = frozenset()
    """Products the user disliked: never recommended to them."""
    liked_categories: tuple[str, ...] = ()
    """Top-level categories by affinity, strongest first."""


class Candidate(NamedTuple):
    """A tuple rather than a frozen dataclass: Recommend builds hundreds per call and a
    tuple is built in half the time."""

    product_id: str
    score: float
    source: Source
    anchor_product_id: str = ""


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    title: str
    category_path: tuple[str, ...]
    brand: str
    currency_code: str
    price_nanos: int
    stock: int
    active: bool
    created_at: float

    @property
    def top_category(self) -> str:
        return self.category_path[0] if self.category_path else ""


@dataclass(frozen=True, slots=True)
class Reason:
    type: ReasonType
    text: str
    anchor_product_id: str = ""
    category: str = ""


@dataclass(frozen=True, slots=True)
class RankedItem:
    product_id: str
    score: float
    source: Source
    reason: Reason


@dataclass(slots=True)
class Recommendation:
    recommendation_id: str
    model_version: str
    items: list[RankedItem]
    degradations: list[Degradation] = field(default_factory=list)
