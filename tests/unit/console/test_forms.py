"""The recommendations page's query string and the feedback forms, as gRPC requests."""

import pytest

from magpie.v1 import common_pb2
from services.console import config
from services.console.forms import (
    FormError,
    feedback_event,
    recommend_request,
    recommendations_query,
    safe_next,
)


def test_an_empty_query_asks_for_the_defaults() -> None:
    ask = recommend_request("u1", {})

    assert ask.user_id == "u1"
    assert ask.k == config.DEFAULT_K
    assert not ask.HasField("filter") or ask.filter == common_pb2.ProductFilter()
    assert (ask.diversity, ask.max_per_category, ask.model_version) == (0.0, 0, "")


def test_every_control_reaches_the_request() -> None:
    ask = recommend_request(
        "u1",
        {
            "k": "25",
            "category": " Home > Kitchen ",
            "brand": "Acme",
            "min_price": "5",
            "max_price": "12.75",
            "currency": "usd",
            "diversity": "0.3",
            "max_per_category": "2",
            "model_version": "7",
        },
    )

    assert ask.k == 25
    assert list(ask.filter.category_prefixes) == ["Home > Kitchen"]
    assert list(ask.filter.brands) == ["Acme"]
    assert ask.filter.min_price == common_pb2.Money(currency_code="USD", units=5)
    assert ask.filter.max_price == common_pb2.Money(
        currency_code="USD", units=12, nanos=750_000_000
    )
    assert ask.diversity == pytest.approx(0.3)
    assert ask.max_per_category == 2
    assert ask.model_version == "7"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("k", "ten"),
        ("k", "0"),
        ("k", str(config.MAX_K + 1)),
        ("diversity", "1.5"),
        ("diversity", "nan"),
        ("max_per_category", "-1"),
        ("min_price", "-3"),
        ("max_price", "cheap"),
        ("currency", "euro"),
        ("brand", "x" * (config.MAX_TEXT + 1)),
    ],
)
def test_a_value_that_means_nothing_names_its_field(field: str, value: str) -> None:
    with pytest.raises(FormError) as raised:
        recommend_request("u1", {field: value})

    assert raised.value.field == field


def test_a_feedback_round_trip_keeps_only_the_page_parameters() -> None:
    query = recommendations_query(
        "k=5&brand=Acme&sent=like&evil=1&category=", sent="dislike", sent_product="p1"
    )

    assert query == "k=5&brand=Acme&sent=dislike&sent_product=p1"


def _form(**fields: str) -> dict[str, str]:
    return {"product_id": "p1", "position": "3", "recommendation_id": "r1", **fields}


def test_a_like_becomes_an_attributed_event() -> None:
    event = feedback_event("u1", _form(event_type="like", model_version="4"), "e1")

    assert event.event_id == "e1"
    assert (event.user_id, event.product_id) == ("u1", "p1")
    assert event.event_type == common_pb2.EVENT_TYPE_LIKE
    assert (event.position, event.recommendation_id, event.model_version) == (3, "r1", "4")
    assert event.comment == ""


def test_a_comment_carries_its_text_and_other_events_none() -> None:
    comment = feedback_event("u1", _form(event_type="comment", comment=" too pricey "), "e1")
    like = feedback_event("u1", _form(event_type="like", comment="ignored"), "e2")

    assert comment.event_type == common_pb2.EVENT_TYPE_COMMENT
    assert comment.comment == "too pricey"
    assert like.comment == ""


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"event_type": "rating"}, "event_type"),
        ({"event_type": "like", "product_id": ""}, "product_id"),
        ({"event_type": "comment", "comment": "  "}, "comment"),
        ({"event_type": "like", "position": "first"}, "position"),
    ],
)
def test_a_bad_feedback_form_names_its_field(fields: dict[str, str], field: str) -> None:
    with pytest.raises(FormError) as raised:
        feedback_event("u1", _form(**fields), "e1")

    assert raised.value.field == field


@pytest.mark.parametrize(
    ("target", "kept"),
    [
        ("users/u1?k=5", "users/u1?k=5"),
        ("/users/u1", "users/u1"),
        ("//evil.example/x", "evil.example/x"),  # below the console's root: "./evil.example/x"
        ("https://evil.example/", ""),
        ("users/../../x", ""),
        ("\\\\evil.example", ""),
        ("users/u1\r\nSet-Cookie: x", ""),
    ],
)
def test_a_sign_in_returns_only_below_the_console(target: str, kept: str) -> None:
    assert safe_next(target) == kept
