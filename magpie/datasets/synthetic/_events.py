"""Sessions of impressions, clicks, carts, purchases and ratings, simulated per user block.

Users are simulated in fixed blocks, each with its own seeded generator, so the
output does not depend on how callers batch it and memory stays bounded by a
block. Within a block everything is vectorised over sessions and pages:

* sessions: Poisson in the user's (heavy-tailed) activity, spread over the span;
* pages: a geometric number per session, each anchored on a leaf category that
  stays put with probability ``category_stickiness`` (sequential drift) and is
  otherwise redrawn from the user's favourites or, rarely, any leaf;
* slate: products from that leaf, another favourite leaf and the global
  best-sellers, skewed towards popular ones; products not yet created at the
  time are not shown;
* click: at most one per page, softmax over ``taste_weight * taste . item +
  popularity_weight * popularity + novelty`` against an outside option (no
  click), sampled with the Gumbel-max trick;
* funnel: add-to-cart and purchase with probabilities rising with affinity and
  falling with relative price (never for out-of-stock products); some
  purchases are rated.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from magpie.datasets.schema import EventKind, Interaction
from magpie.datasets.synthetic._world import World
from magpie.runtime.units import SECONDS_PER_DAY

__all__ = ["USER_BLOCK", "block_interactions"]

USER_BLOCK = 256
"""Users simulated together with one generator; fixed so output never depends on batching."""

_PAGE_STOP = 0.4
"""Chance a session ends after each page: 2.5 pages per session on average."""
_EXPLORE = 0.15
"""Chance a redrawn page category is any leaf rather than a favourite."""
_FROM_LEAF, _FROM_FAVOURITE = 0.65, 0.2
"""Slate slot sources; the rest come from the global best-sellers."""
_LEAF_SKEW, _GLOBAL_SKEW = 2.0, 3.0
"""Exponents on uniform draws of a popularity rank: higher favours the top more."""
_OUTSIDE_LOGIT = 3.0
_NOVELTY_WEIGHT, _NOVELTY_DAYS = 0.8, 14.0
_AFFINITY_CENTRE = 1.0
"""A typical taste . item for a favourite-category product; the funnel is centred on it."""
_RATING_CHANCE = 0.3
_EVENTS_PER_SESSION = 16.0
"""Calibrated average, turning the target event count into a session rate."""
_KINDS = (
    EventKind.IMPRESSION,
    EventKind.CLICK,
    EventKind.ADD_TO_CART,
    EventKind.PURCHASE,
    EventKind.RATING,
)
_MEAN_DELAY = np.array([8.0, 25.0, 60.0, 30.0, 40.0])
"""Mean seconds from impression to click, click to cart, cart to purchase, purchase to
rating, and from there to the next page."""

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


def _sigmoid(x: Floats) -> Floats:
    return 1.0 / (1.0 + np.exp(-x))


def _segment_starts(counts: Ints) -> Ints:
    """Index of each segment's first element when segments of ``counts`` are concatenated."""
    return np.cumsum(counts) - counts


def block_interactions(world: World, block: int) -> list[Interaction]:
    """The interactions of users in ``block``, by user and then time."""
    config = world.config
    rng = np.random.default_rng([config.seed, 1, block])
    first_user = block * USER_BLOCK
    n_block = min(USER_BLOCK, config.n_users - first_user)

    # Sessions, sorted by user and start time.
    session_rate = config.n_events / config.n_users / _EVENTS_PER_SESSION
    n_sessions = rng.poisson(world.user_activity[first_user : first_user + n_block] * session_rate)
    local_user = np.repeat(np.arange(n_block), n_sessions)
    n_total = local_user.size
    if n_total == 0:
        return []
    start = rng.uniform(config.start, config.end, n_total)
    start = start[np.lexsort((start, local_user))]
    ordinal = np.arange(n_total) - _segment_starts(n_sessions)[local_user]
    is_last = ordinal == n_sessions[local_user] - 1
    room = np.where(is_last, config.end, np.roll(start, -1)) - start

    # Pages and their leaf category (sticky within a session).
    n_pages = rng.geometric(_PAGE_STOP, n_total)
    page_session = np.repeat(np.arange(n_total), n_pages)
    n_steps = page_session.size
    position = np.arange(n_steps) - _segment_starts(n_pages)[page_session]
    user = first_user + local_user[page_session]
    n_favourites = world.user_favourites.shape[1]
    favourite_cdf = world.user_favourite_cdf[user]
    pick = np.minimum((rng.random(n_steps)[:, None] > favourite_cdf).sum(axis=1), n_favourites - 1)
    proposed = np.where(
        rng.random(n_steps) < _EXPLORE,
        rng.choice(world.leaf_weight.size, size=n_steps, p=world.leaf_weight),
        world.user_favourites[user, pick],
    )
    redraw = (position == 0) | (rng.random(n_steps) >= config.category_stickiness)
    leaf = proposed[np.maximum.accumulate(np.where(redraw, np.arange(n_steps), 0))]

    # Timing: each page lasts its funnel delays plus browsing; sessions are squeezed
    # where needed so that they end before the user's next one starts.
    delays = rng.exponential(_MEAN_DELAY, (n_steps, _MEAN_DELAY.size)) + 1.0
    funnel_offset = np.cumsum(delays[:, :4], axis=1)
    duration = delays.sum(axis=1)
    elapsed = np.cumsum(duration) - duration
    page_offset = elapsed - elapsed[_segment_starts(n_pages)][page_session]
    session_length = np.bincount(page_session, weights=duration, minlength=n_total)
    squeeze = np.minimum(1.0, 0.9 * room / session_length)[page_session]
    page_time = start[page_session] + squeeze * page_offset
    funnel_time = page_time[:, None] + squeeze[:, None] * funnel_offset

    # Slates.
    k = config.slate_size
    source = rng.random((n_steps, k))
    other = world.user_favourites[user[:, None], rng.integers(n_favourites, size=(n_steps, k))]
    slot_leaf = np.where(source < _FROM_LEAF, leaf[:, None], other)
    rank = (world.leaf_count[slot_leaf] * rng.random((n_steps, k)) ** _LEAF_SKEW).astype(np.int64)
    from_leaf = world.leaf_items[world.leaf_start[slot_leaf] + rank]
    n_items = world.item_leaf.size
    best = world.popular_items[
        (n_items * rng.random((n_steps, k)) ** _GLOBAL_SKEW).astype(np.int64)
    ]
    slate = np.where(source < _FROM_LEAF + _FROM_FAVOURITE, from_leaf, best)
    order = np.argsort(slate, axis=1, kind="stable")
    repeated = np.zeros((n_steps, k), dtype=bool)
    repeated[:, 1:] = np.diff(np.take_along_axis(slate, order, axis=1), axis=1) == 0
    np.put_along_axis(repeated, order, repeated.copy(), axis=1)
    age = page_time[:, None] - world.item_created_at[slate]
    shown = (age >= 0) & ~repeated

    # Clicks: Gumbel-max over the shown slate and an outside option.
    affinity = np.einsum("skd,sd->sk", world.item_vector[slate], world.user_taste[user])
    logits = (
        config.taste_weight * affinity
        + config.popularity_weight * world.item_popularity[slate]
        + _NOVELTY_WEIGHT * np.exp(-np.maximum(age, 0.0) / (_NOVELTY_DAYS * SECONDS_PER_DAY))
    )
    logits = np.concatenate(
        [np.where(shown, logits, -np.inf), np.full((n_steps, 1), _OUTSIDE_LOGIT)], axis=1
    )
    choice = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    clicked = np.flatnonzero(choice < k)
    clicked_slot = choice[clicked]
    clicked_item = slate[clicked, clicked_slot]
    clicked_affinity = affinity[clicked, clicked_slot] - _AFFINITY_CENTRE
    price_pull = (
        world.user_price_sensitivity[user[clicked]] * world.item_log_price_ratio[clicked_item]
    )
    in_stock = world.item_stock[clicked_item] > 0
    carted = in_stock & (
        rng.random(clicked.size) < _sigmoid(-1.0 + 1.5 * clicked_affinity - price_pull)
    )
    bought = carted & (
        rng.random(clicked.size) < _sigmoid(0.3 + 1.0 * clicked_affinity - 0.8 * price_pull)
    )
    rated = bought & (rng.random(clicked.size) < _RATING_CHANCE)
    stars = np.clip(
        np.round(3.6 + 1.2 * clicked_affinity + rng.normal(0.0, 0.8, clicked.size)), 1, 5
    )

    # Events in (page, funnel stage, slot) order, which is also time order per user.
    shown_page, shown_slot = np.nonzero(shown)
    reached = [np.ones(clicked.size, dtype=bool), carted, bought, rated]
    pages = [shown_page] + [clicked[mask] for mask in reached]
    page = np.concatenate(pages)
    stage = np.concatenate([np.full(p.size, stage) for stage, p in enumerate(pages)])
    slot = np.concatenate([shown_slot] + [clicked_slot[mask] for mask in reached])
    item = np.concatenate(
        [slate[shown_page, shown_slot]] + [clicked_item[mask] for mask in reached]
    )
    rating = np.concatenate([np.zeros(page.size - rated.sum()), stars[rated]])
    when = np.where(stage == 0, page_time[page], funnel_time[page, np.maximum(stage - 1, 0)])
    order = np.lexsort((slot, stage, page))

    return _records(
        world,
        first_user,
        page_session,
        local_user,
        ordinal,
        page[order],
        stage[order],
        item[order],
        when[order],
        rating[order],
    )


def _records(
    world: World,
    first_user: int,
    page_session: Ints,
    local_user: Ints,
    ordinal: Ints,
    page: Ints,
    stage: Ints,
    item: Ints,
    when: Floats,
    rating: Floats,
) -> list[Interaction]:
    config = world.config
    session = page_session[page]
    unique_items, item_position = np.unique(item, return_inverse=True)
    item_ids = [config.item_id(i) for i in unique_items.tolist()]
    user_ids = [config.user_id(first_user + u) for u in range(int(local_user.max()) + 1)]
    session_user = local_user.tolist()
    session_ids = [
        f"{user_ids[u]}-s{n:04d}" for u, n in zip(session_user, ordinal.tolist(), strict=True)
    ]
    return [
        Interaction(user_ids[session_user[s]], item_ids[i], _KINDS[k], t, r, session_ids[s])
        for s, i, k, t, r in zip(
            session.tolist(),
            item_position.tolist(),
            stage.tolist(),
            when.tolist(),
            rating.tolist(),
            strict=True,
        )
    ]
