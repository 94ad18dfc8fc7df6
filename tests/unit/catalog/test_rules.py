"""Per-product content checks of UpsertProducts and category prefixes."""

import pytest

from magpie.runtime.products import category_problem
from services.catalog.service import Price, ProductDraft, product_problem
from services.catalog.storage import like_prefix


def test_a_plain_product_is_fine() -> None:
    draft = ProductDraft(
        "p1",
        "Knife",
        category_path=("Home", "Kitchen"),
        price=Price("EUR", 12, 500_000_000),
        rating=5.0,
        attributes={"k": "v"},
    )

    assert product_problem(draft) is None


@pytest.mark.parametrize(
    ("draft", "field"),
    [
        (ProductDraft("", "t"), "product_id"),
        (ProductDraft("a" * 129, "t"), "product_id"),
        (ProductDraft("p", " "), "title"),
        (ProductDraft("p", "t", price=Price("EURO", 1, 0)), "price"),
        (ProductDraft("p", "t", price=Price("EUR", -1, 0)), "price"),
        (ProductDraft("p", "t", price=Price("EUR", 1, 1_000_000_000)), "price"),
        (ProductDraft("p", "t", price=Price("EUR", 10**10, 0)), "price"),
        (ProductDraft("p", "t", rating=float("nan")), "rating"),
        (ProductDraft("p", "t", rating=-0.1), "rating"),
        (ProductDraft("p", "t", stock=-1), "stock"),
        (ProductDraft("p", "t", tags=("",)), "tags"),
        (ProductDraft("p", "t", attributes={"": "v"}), "attributes"),
        (ProductDraft("p", "t", category_path=("Home", "")), "category_path"),
    ],
)
def test_each_problem_names_its_field(draft: ProductDraft, field: str) -> None:
    problem = product_problem(draft)

    assert problem is not None
    assert problem.startswith(field + ":")


@pytest.mark.parametrize(
    ("level", "ok"),
    [
        ("Kitchen", True),
        ("Kids > 3", False),
        ("A >", False),
        ("> B", False),
        (">", False),
        ("A>B", True),
        (" A", False),
        ("", False),
    ],
)
def test_category_levels_cannot_fake_the_separator(level: str, ok: bool) -> None:
    assert (category_problem(level) is None) is ok


def test_like_prefix_escapes_wildcards_and_ends_at_a_level() -> None:
    assert like_prefix("50%_off\\x") == "50\\%\\_off\\\\x > %"
