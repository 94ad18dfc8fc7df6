"""Paging through listings ordered by id (ListProducts, ListProfiles): opaque page tokens,
filter fingerprints, and LIKE patterns for prefix filters.

A token is the URL-safe base64 of a small versioned JSON object holding the last id of
the page and a fingerprint of the filter that produced it, so that a token replayed with
another filter is refused instead of silently paging through a different result set.
Tokens are not secret: they only name a position in an ordered listing. A listing reads
one row more than the page size to know whether another page follows (`next_page`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

from magpie.runtime.errors import FieldViolation, InvalidArgument
from magpie.runtime.validation import id_problem

__all__ = [
    "TOKEN_VERSION",
    "InvalidPageToken",
    "decode_page_token",
    "encode_page_token",
    "filter_fingerprint",
    "like_escape",
    "next_page",
]

T = TypeVar("T")

TOKEN_VERSION = 1


class InvalidPageToken(InvalidArgument):
    """The request's `page_token` is malformed, from another version, or from another
    filter."""

    def __init__(self, reason: str) -> None:
        super().__init__([FieldViolation("page_token", reason)])


def filter_fingerprint(canonical: object) -> str:
    """Stable digest of a listing's filter, given as JSON-able values (others by `str`)."""
    encoded = json.dumps(canonical, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def encode_page_token(after_id: str, fingerprint: str) -> str:
    payload = json.dumps({"v": TOKEN_VERSION, "after": after_id, "f": fingerprint})
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_page_token(token: str, fingerprint: str) -> str:
    """The id the page starts after ("" for the first page, an empty token); raises
    InvalidPageToken."""
    if not token:
        return ""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError) as error:
        raise InvalidPageToken("is not a token returned by this listing") from error
    if not isinstance(payload, dict) or payload.get("v") != TOKEN_VERSION:
        raise InvalidPageToken("is not a token returned by this version of the listing")
    after = payload.get("after")
    if not isinstance(after, str) or id_problem(after) is not None:
        raise InvalidPageToken("is not a token returned by this listing")
    if payload.get("f") != fingerprint:
        raise InvalidPageToken("was issued for a different filter; start again without a token")
    return after


def next_page(
    rows: Sequence[T], page_size: int, row_id: Callable[[T], str], fingerprint: str
) -> tuple[list[T], str]:
    """The page out of `rows` (read with a limit of `page_size + 1`) and the token of the
    next page, empty when there is none."""
    if len(rows) <= page_size:
        return list(rows), ""
    page = list(rows[:page_size])
    return page, encode_page_token(row_id(page[-1]), fingerprint)


def like_escape(text: str) -> str:
    """`text` as a LIKE pattern that matches only itself (LIKE's default `\\` escape);
    append `%` to match what starts with it."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
