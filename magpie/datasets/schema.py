"""The in-memory shape every data set takes, whatever its source.

Loaders (MovieLens-100k, the synthetic generator) produce these records; the
model code trains on them and the gRPC loaders send them to the services.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["Dataset", "EventKind", "Interaction", "Item", "User"]


class EventKind(StrEnum):
    """Mirrors magpie.v1.EventType without depending on generated code."""

    IMPRESSION = "impression"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"
    RATING = "rating"


@dataclass(frozen=True, slots=True)
class Item:
    item_id: str
    title: str
    description: str
    category_path: tuple[str, ...]
    brand: str = ""
    tags: tuple[str, ...] = ()
    price: float = 0.0
    currency: str = "EUR"
    stock: int = 100
    rating: float = 0.0
    created_at: float = 0.0
    """Unix seconds."""
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    age_band: str = ""
    """One of "under_18", "18_24", "25_34", "35_44", "45_54", "55_64", "65_plus" or ""."""
    gender: str = ""
    """"female", "male", "other" or ""."""
    region: str = ""
    segments: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Interaction:
    user_id: str
    item_id: str
    kind: EventKind
    timestamp: float
    """Unix seconds."""
    rating: float = 0.0
    session_id: str = ""


@dataclass(slots=True)
class Dataset:
    """A catalog, its users and their interactions in file (or generation) order."""

    name: str
    items: list[Item]
    users: list[User]
    interactions: list[Interaction]
