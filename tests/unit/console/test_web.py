"""Relative links back to the console's root, and the small formatters of the pages."""

import pytest

from magpie.runtime.settings import load_settings
from magpie.v1 import common_pb2
from services.console.auth import route_path
from services.console.web import money_text, relative_base, segment, trace_link


@pytest.mark.parametrize(
    ("path", "base"),
    [
        ("/", "./"),
        ("/login", "./"),
        ("/users/u1", "../"),
        ("/users/u1/portrait", "../../"),
        ("/users/u1/", "../../"),  # a trailing slash is a directory to the browser
        ("/products/p1", "../"),
    ],
)
def test_base_leads_back_to_the_root(path: str, base: str) -> None:
    assert relative_base(path) == base


@pytest.mark.parametrize(
    ("page", "base", "link"),
    [
        ("https://host/", "./", "users/u1"),
        ("https://host/users/u1", "../", "users/u1/portrait"),
        ("https://host/magpie/users/u1/portrait", "../../", "models"),
    ],
)
def test_a_relative_link_stays_below_an_ingress_prefix(page: str, base: str, link: str) -> None:
    from urllib.parse import urljoin, urlsplit

    prefix = "/magpie" if "/magpie/" in page else ""
    resolved = urljoin(page, base + link)

    assert relative_base(urlsplit(page).path.removeprefix(prefix)) == base
    assert resolved == f"https://host{prefix}/{link}"


def test_the_route_path_drops_the_asgi_root_path() -> None:
    assert route_path({"path": "/magpie/users/u1", "root_path": "/magpie"}) == "/users/u1"
    assert route_path({"path": "/magpie", "root_path": "/magpie"}) == "/"
    assert route_path({"path": "/users/u1"}) == "/users/u1"


def test_an_id_is_one_path_segment() -> None:
    assert segment("u 1/../x?y#z") == "u%201%2F..%2Fx%3Fy%23z"


def test_money_reads_like_a_price() -> None:
    money = common_pb2.Money(currency_code="EUR", units=1234, nanos=500_000_000)

    assert money_text(money) == "EUR 1,234.50"


def test_the_trace_link_follows_the_template_or_is_absent() -> None:
    jaeger = load_settings({"console_trace_url": "https://jaeger.example/trace/{trace_id}"})

    assert trace_link(jaeger, "ab" * 16) == "https://jaeger.example/trace/" + "ab" * 16
    assert trace_link(jaeger, "") == ""
    assert trace_link(load_settings(), "ab" * 16) == ""
