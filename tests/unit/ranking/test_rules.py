import numpy as np

from magpie.runtime.filters import ProductFilter
from services.ranking.domain import Candidate, Product, ReasonType, Source, UserState
from services.ranking.rules import allowed, diversify, reason_for

NANOS = 1_000_000_000


def product(
    pid: str,
    *,
    path: tuple[str, ...] = ("Home", "Kitchen"),
    stock: int = 5,
    active: bool = True,
    price: float = 10.0,
    brand: str = "Acme",
    created_at: float = 0.0,
) -> Product:
    return Product(
        pid, f"Title {pid}", path, brand, "EUR", int(price * NANOS), stock, active, created_at
    )


def test_allowed_applies_every_rule() -> None:
    user = UserState("u", purchased=frozenset({"bought"}))
    f = ProductFilter(
        category_prefixes=("Home > Kitchen",),
        currency="EUR",
        min_price_nanos=5 * NANOS,
        max_price_nanos=20 * NANOS,
        exclude_product_ids=("excluded",),
        brands=("Acme",),
    )

    assert allowed(product("ok"), user, f)
    assert not allowed(None, user, f)
    assert not allowed(product("bought"), user, f)
    assert not allowed(product("excluded"), user, f)
    assert not allowed(product("empty", stock=0), user, f)
    assert not allowed(product("hidden", active=False), user, f)
    assert not allowed(product("other", path=("Home", "Kitchenware")), user, f)
    assert allowed(product("deeper", path=("Home", "Kitchen", "Knives")), user, f)
    assert not allowed(product("cheap", price=1.0), user, f)
    assert not allowed(product("dear", price=50.0), user, f)
    assert not allowed(product("brand", brand="Other"), user, f)


def test_diversify_without_diversity_keeps_score_order_and_category_cap() -> None:
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    categories = ["a", "a", "a", "b", "b"]

    picked = diversify(
        [0, 1, 2, 3, 4], scores, categories, None, k=3, diversity=0.0, max_per_category=2
    )

    assert picked == [0, 1, 3]


def test_mmr_prefers_a_dissimilar_item_over_a_near_duplicate() -> None:
    scores = np.array([1.0, 0.99, 0.9])
    e = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)

    plain = diversify([0, 1, 2], scores, ["x"] * 3, e, k=2, diversity=0.0, max_per_category=0)
    diverse = diversify([0, 1, 2], scores, ["x"] * 3, e, k=2, diversity=0.5, max_per_category=0)

    assert plain == [0, 1]
    assert diverse == [0, 2]


def test_reasons() -> None:
    user = UserState("u", recent_product_ids=("p1",), liked_categories=("Home",))
    titles = {"p1": "Chef's Knife"}
    now = 100 * 86400.0

    related = reason_for(
        Candidate("p2", 1, Source.COVISITATION, "p1"),
        product("p2"),
        user,
        titles,
        now,
        30 * 86400.0,
    )
    new = reason_for(
        Candidate("p3", 1, Source.ANN),
        product("p3", created_at=now - 86400),
        user,
        titles,
        now,
        30 * 86400.0,
    )
    popular = reason_for(
        Candidate("p4", 1, Source.POPULAR),
        product("p4", path=("Toys",)),
        user,
        titles,
        now,
        30 * 86400.0,
    )

    assert (related.type, related.text) == (
        ReasonType.RELATED_TO_ITEM,
        "Because you viewed Chef's Knife",
    )
    assert related.anchor_product_id == "p1"
    assert new.type is ReasonType.NEW_IN_CATEGORY and "Home" in new.text
    assert (popular.type, popular.text) == (ReasonType.POPULAR, "Popular in Toys")
