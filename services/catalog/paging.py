"""Opaque page tokens for ListProducts.

A token is the URL-safe base64 of a small versioned JSON object holding the
last product id of the page and a fingerprint of the filter that produced it,
so that a token replayed with another filter is refused instead of silently
paging through a different result set. Tokens are not secret: they only name
a position in an ordered listing.
"""

from __future__ import annotations

import base64
import binascii
import json

from magpie.runtime.validation import id_problem

__all__ = ["TOKEN_VERSION", "InvalidPageToken", "decode_page_token", "encode_page_token"]

TOKEN_VERSION = 1


class InvalidPageToken(ValueError):
    """The token is malformed, from another version, or from another filter."""


def encode_page_token(after_id: str, fingerprint: str) -> str:
    payload = json.dumps({"v": TOKEN_VERSION, "after": after_id, "f": fingerprint})
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_page_token(token: str, fingerprint: str) -> str:
    """The product id the next page starts after; raises InvalidPageToken."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError) as error:
        raise InvalidPageToken("is not a token returned by ListProducts") from error
    if not isinstance(payload, dict) or payload.get("v") != TOKEN_VERSION:
        raise InvalidPageToken("is not a token returned by this version of ListProducts")
    after = payload.get("after")
    if not isinstance(after, str) or id_problem(after) is not None:
        raise InvalidPageToken("is not a token returned by ListProducts")
    if payload.get("f") != fingerprint:
        raise InvalidPageToken("was issued for a different filter; start again without a token")
    return after
