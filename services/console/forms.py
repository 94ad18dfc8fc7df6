"""What the pages' forms and query strings mean, as requests to the services.

Pure functions: a value a person typed that cannot mean anything (a k of "ten", a price
of "-3") is a `FormError` naming the field; what the console can pass on, the services
validate in full (their INVALID_ARGUMENT names the field too).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl, urlencode

from magpie.runtime.units import NANOS_PER_UNIT
from magpie.v1 import common_pb2, feedback_pb2, ranking_pb2
from services.console import config

__all__ = [
    "EVENT_TYPES",
    "RECOMMEND_FIELDS",
    "FormError",
    "feedback_event",
    "recommend_request",
    "recommendations_query",
    "safe_next",
]

EVENT_TYPES: Mapping[str, common_pb2.EventType.ValueType] = {
    "click": common_pb2.EVENT_TYPE_CLICK,
    "like": common_pb2.EVENT_TYPE_LIKE,
    "dislike": common_pb2.EVENT_TYPE_DISLIKE,
    "add_to_cart": common_pb2.EVENT_TYPE_ADD_TO_CART,
    "purchase": common_pb2.EVENT_TYPE_PURCHASE,
    "comment": common_pb2.EVENT_TYPE_COMMENT,
}
"""The feedback a page can send, by the value of its ``event_type`` field."""

RECOMMEND_FIELDS = (
    "k",
    "category",
    "brand",
    "min_price",
    "max_price",
    "currency",
    "diversity",
    "max_per_category",
    "model_version",
)
"""Query parameters of the recommendations page (kept across a feedback round trip)."""

_CURRENCY = re.compile(r"[A-Z]{3}")
_NEXT = re.compile(r"[A-Za-z0-9._~%!$&'()*+,;=/?-]*")
"""Characters a sign-in's return path may hold: a path and query, no scheme, no "\\"."""


class FormError(ValueError):
    """A form field whose value means nothing."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def _text(values: Mapping[str, str], field: str) -> str:
    value = values.get(field, "").strip()
    if len(value) > config.MAX_TEXT:
        raise FormError(field, f"must be at most {config.MAX_TEXT} characters")
    return value


def _integer(values: Mapping[str, str], field: str, default: int, low: int, high: int) -> int:
    text = _text(values, field)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise FormError(field, f"must be a whole number from {low} to {high}")
    return value


def _fraction(values: Mapping[str, str], field: str) -> float:
    text = _text(values, field)
    if not text:
        return 0.0
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or not 0 <= value <= 1:
        raise FormError(field, "must be a number from 0 to 1")
    return float(value)


def _money(values: Mapping[str, str], field: str, currency: str) -> common_pb2.Money | None:
    text = _text(values, field)
    if not text:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        amount = Decimal(-1)
    if not amount.is_finite() or amount < 0:
        raise FormError(field, "must be an amount of at least 0, like 12.50")
    nanos = int(amount * NANOS_PER_UNIT)
    return common_pb2.Money(
        currency_code=currency, units=nanos // NANOS_PER_UNIT, nanos=nanos % NANOS_PER_UNIT
    )


def recommend_request(user_id: str, query: Mapping[str, str]) -> ranking_pb2.RecommendRequest:
    """The Recommend the recommendations page's query string asks for."""
    currency = _text(query, "currency").upper() or config.DEFAULT_CURRENCY
    if not _CURRENCY.fullmatch(currency):
        raise FormError("currency", "must be a three-letter code like EUR")
    category, brand = _text(query, "category"), _text(query, "brand")
    return ranking_pb2.RecommendRequest(
        user_id=user_id,
        k=_integer(query, "k", config.DEFAULT_K, 1, config.MAX_K),
        filter=common_pb2.ProductFilter(
            category_prefixes=[category] if category else [],
            brands=[brand] if brand else [],
            min_price=_money(query, "min_price", currency),
            max_price=_money(query, "max_price", currency),
        ),
        max_per_category=_integer(query, "max_per_category", 0, 0, config.MAX_K),
        diversity=_fraction(query, "diversity"),
        model_version=_text(query, "model_version"),
    )


def recommendations_query(query_string: str, **extra: str) -> str:
    """The recommendations page's own parameters from `query_string` (anything else
    dropped), with `extra` added: where a feedback round trip returns to."""
    kept = [(k, v) for k, v in parse_qsl(query_string) if k in RECOMMEND_FIELDS and v]
    return urlencode([*kept, *extra.items()])


def feedback_event(user_id: str, form: Mapping[str, str], event_id: str) -> feedback_pb2.Event:
    """The feedback event a card's form sends."""
    kind = _text(form, "event_type")
    if kind not in EVENT_TYPES:
        raise FormError("event_type", f"must be one of {', '.join(EVENT_TYPES)}")
    product_id = _text(form, "product_id")
    if not product_id:
        raise FormError("product_id", "is required")
    comment = _text(form, "comment") if kind == "comment" else ""
    if kind == "comment" and not comment:
        raise FormError("comment", "write a few words first")
    return feedback_pb2.Event(
        event_id=event_id,
        user_id=user_id,
        product_id=product_id,
        event_type=EVENT_TYPES[kind],
        recommendation_id=_text(form, "recommendation_id"),
        model_version=_text(form, "model_version"),
        position=_integer(form, "position", 0, 0, config.MAX_K),
        comment=comment,
    )


def safe_next(value: str) -> str:
    """Where a sign-in returns to, relative to the console's root ("users/u1?k=5"): a path
    and query below the root and nothing else (never another site); "" when in doubt."""
    value = value.lstrip("/")
    return value if _NEXT.fullmatch(value) and ".." not in value.split("?")[0] else ""
