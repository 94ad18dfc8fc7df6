"""Page tokens, filter fingerprints and prefix patterns of listings ordered by id."""

import base64
import json

import pytest

from magpie.runtime.paging import (
    InvalidPageToken,
    decode_page_token,
    encode_page_token,
    filter_fingerprint,
    like_escape,
    next_page,
)


def test_token_round_trips_with_the_same_fingerprint() -> None:
    token = encode_page_token("p/ü 42", "abc")

    assert decode_page_token(token, "abc") == "p/ü 42"
    assert token.isascii() and "=" not in token


def test_an_empty_token_starts_at_the_beginning() -> None:
    assert decode_page_token("", "abc") == ""


@pytest.mark.parametrize(
    "token",
    [
        "!!!",
        "bm90IGpzb24",  # "not json"
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(json.dumps({"v": 2, "after": "a", "f": "abc"}).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps({"v": 1, "after": "", "f": "abc"}).encode()).decode(),
        base64.urlsafe_b64encode(
            json.dumps({"v": 1, "after": "a\0", "f": "abc"}).encode()
        ).decode(),
        encode_page_token("a", "another filter"),
    ],
)
def test_foreign_tokens_are_refused_naming_the_page_token(token: str) -> None:
    with pytest.raises(InvalidPageToken) as raised:
        decode_page_token(token, "abc")

    assert [v.field for v in raised.value.violations] == ["page_token"]


def test_fingerprint_is_stable_and_tells_filters_apart() -> None:
    assert filter_fingerprint({"a": 1, "b": "x"}) == filter_fingerprint({"b": "x", "a": 1})
    assert filter_fingerprint({"prefix": ""}) != filter_fingerprint({"prefix": "a"})


def test_a_full_page_hands_out_a_token_after_its_last_row() -> None:
    page, token = next_page(["a", "b", "c"], 2, str.upper, "f")
    last, none = next_page(["c", "d"], 2, str.upper, "f")

    assert page == ["a", "b"] and decode_page_token(token, "f") == "B"
    assert (last, none) == (["c", "d"], "")


def test_like_escape_makes_wildcards_literal() -> None:
    assert like_escape("50%_off\\x") == "50\\%\\_off\\\\x"
