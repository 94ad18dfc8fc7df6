"""Ranking's product cache: fresh entries answer, stale and unknown ones are fetched
(absent ones too, every time), and memory stays bounded."""

from __future__ import annotations

from services.ranking.domain import Product
from services.ranking.product_cache import ProductCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _product(product_id: str) -> Product:
    return Product(product_id, product_id.upper(), ("Cat",), "b", "EUR", 1, 3, True, 0.0)


def test_fresh_products_answer_and_the_rest_is_fetched_in_order() -> None:
    clock = Clock()
    cache = ProductCache(30.0, 10, clock)
    cache.store({"a": _product("a"), "b": _product("b")})

    found, missing = cache.split(["c", "a", "d", "b"])

    assert found == {"a": _product("a"), "b": _product("b")}
    assert missing == ["c", "d"]


def test_a_product_the_catalog_did_not_return_is_asked_for_again() -> None:
    """It may be activated again at any time: it must not stay hidden for the TTL."""
    cache = ProductCache(30.0, 10, Clock())
    cache.store({"a": _product("a")})  # a fetch of "a" and "inactive"

    assert cache.split(["inactive", "a"]) == ({"a": _product("a")}, ["inactive"])


def test_entries_expire_after_the_ttl_and_a_refetch_renews_them() -> None:
    clock = Clock()
    cache = ProductCache(30.0, 10, clock)
    cache.store({"a": _product("a")})
    clock.now += 29.9
    assert cache.split(["a"]) == ({"a": _product("a")}, [])

    clock.now += 0.1
    assert cache.split(["a"]) == ({}, ["a"])
    renamed = Product("a", "NEW", ("Cat",), "b", "EUR", 1, 3, True, 0.0)
    cache.store({"a": renamed})
    assert cache.split(["a"]) == ({"a": renamed}, [])


def test_capacity_drops_the_oldest_and_expired_entries_are_dropped_on_store() -> None:
    clock = Clock()
    cache = ProductCache(30.0, 3, clock)
    for name in "abcd":
        cache.store({name: _product(name)})
        clock.now += 1

    assert cache.split("abcd") == ({n: _product(n) for n in "bcd"}, ["a"])
    cache.store({"b": _product("b")})  # renewed: now the newest
    cache.store({"e": _product("e")})
    assert cache.split("bcde")[1] == ["c"]

    clock.now += 60  # all stale: the next store keeps only itself
    cache.store({"f": _product("f")})
    assert len(cache._entries) == 1
