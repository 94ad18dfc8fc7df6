"""Business rules applied after scoring: exclusions, filters, diversity, reasons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from magpie.runtime.filters import CATEGORY_SEPARATOR, ProductFilter, matches
from services.ranking.domain import (
    Candidate,
    Floats,
    Product,
    Reason,
    ReasonType,
    Source,
    UserState,
)

__all__ = ["allowed", "diversify", "reason_for"]


def allowed(product: Product | None, user: UserState, request_filter: ProductFilter) -> bool:
    """Whether a product may be shown to this user under this request's filter.

    A product the catalog did not return (unknown, hidden or withdrawn) never may, nor one
    the user bought or disliked.
    """
    if product is None:
        return False
    pid = product.product_id
    if pid in request_filter.exclude_product_ids or pid in user.purchased or pid in user.disliked:
        return False
    if not product.active or product.stock <= 0:
        return False
    return matches(
        request_filter,
        CATEGORY_SEPARATOR.join(product.category_path),
        product.brand,
        product.currency_code,
        product.price_nanos,
    )


def diversify(
    order: Sequence[int],
    scores: Floats,
    categories: Sequence[str],
    embeddings: Floats | None,
    *,
    k: int,
    diversity: float,
    max_per_category: int,
) -> list[int]:
    """Picks k positions from `order` (best first) with MMR and a per-category cap.

    MMR maximises (1 - diversity) * relevance - diversity * max similarity to the
    items already picked; relevance is the score min-max normalised over the
    candidates; similarity is the cosine of the rows of `embeddings` (unit
    vectors). With diversity 0 (or no embeddings) this is the score order.
    """
    per_category: dict[str, int] = {}

    def fits(i: int) -> bool:
        return max_per_category <= 0 or per_category.get(categories[i], 0) < max_per_category

    def take(i: int, picked: list[int]) -> None:
        picked.append(i)
        per_category[categories[i]] = per_category.get(categories[i], 0) + 1

    picked: list[int] = []
    if diversity <= 0 or embeddings is None:
        for i in order:
            if len(picked) == k:
                break
            if fits(i):
                take(i, picked)
        return picked

    pool = np.asarray(order, dtype=np.int64)
    relevance = scores[pool].astype(np.float64)
    span = float(relevance.max() - relevance.min()) if len(pool) else 0.0
    relevance = (relevance - relevance.min()) / span if span > 0 else np.ones_like(relevance)
    vectors = embeddings[pool]
    max_similarity = np.full(len(pool), -np.inf)
    available = np.ones(len(pool), dtype=bool)
    while len(picked) < k and available.any():
        redundancy = np.where(np.isfinite(max_similarity), max_similarity, 0.0)
        value = (1.0 - diversity) * relevance - diversity * redundancy
        value[~available] = -np.inf
        best = int(np.argmax(value))
        available[best] = False
        i = int(pool[best])
        if not fits(i):
            continue
        take(i, picked)
        max_similarity = np.maximum(max_similarity, vectors @ vectors[best])
    return picked


def reason_for(
    candidate: Candidate,
    product: Product | None,
    user: UserState,
    titles: Mapping[str, str],
    now: float,
    new_product_seconds: float,
) -> Reason:
    """The most specific true reason, in this order: the product of the user's history that
    led here (its anchor, whichever source kept the candidate), new in a category the user
    likes, popular (a popular candidate only), a category the user likes, "Picked for you".

    An anchor counts only when it is in the user's history (cold-start content is anchored
    on popular products) and its title was fetched.
    """
    category = product.top_category if product is not None else ""
    anchor = candidate.anchor_product_id
    if anchor in titles and anchor in user.recent_product_ids:
        return Reason(
            ReasonType.RELATED_TO_ITEM, f"Because you viewed {titles[anchor]}", anchor, category
        )
    is_new = product is not None and now - product.created_at <= new_product_seconds
    if is_new and category and category in user.liked_categories:
        return Reason(
            ReasonType.NEW_IN_CATEGORY, f"New in {category}, a category you like", "", category
        )
    if candidate.source is Source.POPULAR:
        text = f"Popular in {category} this week" if category else "Popular this week"
        return Reason(ReasonType.POPULAR, text, "", category)
    if category and category in user.liked_categories:
        return Reason(ReasonType.PERSONALIZED, f"Because you like {category}", "", category)
    return Reason(ReasonType.PERSONALIZED, "Picked for you", "", category)
