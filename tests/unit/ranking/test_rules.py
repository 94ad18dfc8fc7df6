import numpy as np
import pytest

from magpie.runtime.filters import ProductFilter
from services.ranking.domain import Candidate, Product, Reason, ReasonType, Source, UserState
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


def test_a_disliked_product_is_never_allowed() -> None:
    user = UserState("u", disliked=frozenset({"meh"}))

    assert not allowed(product("meh"), user, ProductFilter())
    assert allowed(product("meh"), UserState("someone-else"), ProductFilter())


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


DAY = 86400.0
NOW = 100 * DAY
TITLES = {"p1": "Chef's Knife", "stranger": "Garden Hose"}
HISTORY = UserState("u", recent_product_ids=("p1",), liked_categories=("Home",))


def _reason(candidate: Candidate, item: Product, user: UserState = HISTORY) -> Reason:
    return reason_for(candidate, item, user, TITLES, NOW, 30 * DAY)


@pytest.mark.parametrize(
    "source", [Source.COVISITATION, Source.CONTENT, Source.ANN], ids=lambda s: s.name
)
def test_an_anchor_from_the_users_history_names_that_product(source: Source) -> None:
    # ANN keeps a product co-visitation or content also proposed, with their anchor.
    reason = _reason(Candidate("p2", 1, source, "p1"), product("p2", path=("Toys",)))

    assert reason == Reason(
        ReasonType.RELATED_TO_ITEM, "Because you viewed Chef's Knife", "p1", "Toys"
    )


def test_an_anchor_the_user_never_saw_is_no_reason() -> None:
    # Cold-start content is anchored on popular products, not on anything the user did.
    reason = _reason(Candidate("p2", 1, Source.CONTENT, "stranger"), product("p2", path=("Toys",)))

    assert reason == Reason(ReasonType.PERSONALIZED, "Picked for you", "", "Toys")


def test_an_anchor_without_a_title_falls_through() -> None:
    # The catalog failed or withheld the anchor: no "Because you viewed " with no name.
    reason = _reason(Candidate("p2", 1, Source.COVISITATION, "p9"), product("p2", path=("Toys",)))

    assert reason.type is ReasonType.PERSONALIZED and reason.anchor_product_id == ""


def test_a_young_product_in_a_liked_category_is_new() -> None:
    reason = _reason(Candidate("p3", 1, Source.ANN), product("p3", created_at=NOW - DAY))

    assert reason == Reason(
        ReasonType.NEW_IN_CATEGORY, "New in Home, a category you like", "", "Home"
    )


def test_popular_candidates_name_their_category_and_the_week() -> None:
    in_toys = _reason(Candidate("p4", 1, Source.POPULAR), product("p4", path=("Toys",)))
    anywhere = _reason(Candidate("p5", 1, Source.POPULAR), product("p5", path=()))

    assert in_toys == Reason(ReasonType.POPULAR, "Popular in Toys this week", "", "Toys")
    assert anywhere == Reason(ReasonType.POPULAR, "Popular this week", "", "")


def test_only_a_popular_candidate_is_called_popular_even_for_a_new_user() -> None:
    new_user = UserState("new")

    reason = _reason(Candidate("p2", 1, Source.CONTENT, "p1"), product("p2"), new_user)

    assert reason == Reason(ReasonType.PERSONALIZED, "Picked for you", "", "Home")


def test_picked_for_you_only_when_nothing_more_specific_is_true() -> None:
    liked = _reason(Candidate("p6", 1, Source.ANN), product("p6"))
    other = _reason(Candidate("p7", 1, Source.ANN), product("p7", path=("Toys",)))

    assert liked == Reason(ReasonType.PERSONALIZED, "Because you like Home", "", "Home")
    assert other == Reason(ReasonType.PERSONALIZED, "Picked for you", "", "Toys")
