"""The synthetic world: deterministic, streamed, consistent, and driven by latent tastes."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pytest

from magpie.datasets.schema import Dataset, EventKind, Interaction
from magpie.datasets.synthetic import (
    PRESETS,
    SyntheticConfig,
    generate,
    iter_interactions,
    iter_items,
    iter_users,
    latent_factors,
    preset,
)
from magpie.runtime.units import SECONDS_PER_DAY

_T = TypeVar("_T")
_AGE_BANDS = {"under_18", "18_24", "25_34", "35_44", "45_54", "55_64", "65_plus"}
_FUNNEL = (EventKind.CLICK, EventKind.ADD_TO_CART, EventKind.PURCHASE, EventKind.RATING)
# Big enough for stable ranking metrics, small enough to generate in a fraction of a second.
_EVAL = SyntheticConfig(n_products=1_000, n_users=500, n_events=50_000)


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    return generate(PRESETS["tiny"])


@pytest.fixture(scope="module")
def world() -> Dataset:
    return generate(_EVAL)


def _flat(batches: list[list[_T]]) -> list[_T]:
    return [record for batch in batches for record in batch]


def test_same_seed_gives_identical_output_and_another_seed_differs() -> None:
    first = generate(PRESETS["tiny"])
    other = generate(preset("tiny", seed=1))
    # The world of the last config is cached; generating another in between rebuilds it.
    again = generate(preset("tiny"))

    assert again == first
    assert other.items != first.items
    assert other.users != first.users
    assert other.interactions != first.interactions


@pytest.mark.parametrize("batch_size", [1, 37, 100_000])
def test_batch_size_does_not_change_the_output(tiny: Dataset, batch_size: int) -> None:
    config = PRESETS["tiny"]

    assert _flat(list(iter_items(config, batch_size))) == tiny.items
    assert _flat(list(iter_users(config, batch_size))) == tiny.users
    assert _flat(list(iter_interactions(config, batch_size))) == tiny.interactions


@pytest.mark.parametrize("batch_size", [1, 64, 999])
def test_streams_yield_batches_no_larger_than_batch_size(batch_size: int) -> None:
    config = PRESETS["tiny"]
    for stream in (iter_items, iter_users, iter_interactions):
        sizes = [len(batch) for batch in stream(config, batch_size)]

        assert sizes
        assert min(sizes) > 0
        assert max(sizes) <= batch_size
        assert all(size == batch_size for size in sizes[:-1])


def test_rejects_bad_batch_sizes_configs_and_preset_names() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        next(iter_interactions(PRESETS["tiny"], 0))
    with pytest.raises(ValueError, match="start"):
        SyntheticConfig(start=10.0, end=5.0)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("gigantic")


def test_presets_grow_to_benchmark_sizes() -> None:
    sizes = [
        (c.n_products, c.n_events)
        for c in (PRESETS[n] for n in ("tiny", "small", "medium", "large"))
    ]

    assert sizes == sorted(sizes)
    assert PRESETS["small"].n_products == 5_000
    assert PRESETS["large"].n_products == 1_000_000
    assert PRESETS["large"].n_events == 10_000_000
    assert preset("small", seed=3).seed == 3


def test_ids_are_unique_well_formed_and_referenced_records_exist(world: Dataset) -> None:
    item_ids = [item.item_id for item in world.items]
    user_ids = [user.user_id for user in world.users]

    assert len(set(item_ids)) == _EVAL.n_products
    assert len(set(user_ids)) == _EVAL.n_users
    assert item_ids[0] == "p0000001"
    assert user_ids[0] == "u000001"
    assert all(re.fullmatch(r"p\d{7}", i) for i in item_ids)
    assert all(re.fullmatch(r"u\d{6}", u) for u in user_ids)
    assert {e.item_id for e in world.interactions} <= set(item_ids)
    assert {e.user_id for e in world.interactions} <= set(user_ids)
    assert all(e.session_id.startswith(e.user_id) for e in world.interactions)


def test_event_count_lands_near_the_target(world: Dataset) -> None:
    assert 0.8 * _EVAL.n_events <= len(world.interactions) <= 1.2 * _EVAL.n_events


def test_timestamps_are_in_span_after_creation_and_non_decreasing_per_user(
    world: Dataset,
) -> None:
    created = {item.item_id: item.created_at for item in world.items}
    last_seen: dict[str, float] = {}
    for event in world.interactions:
        assert _EVAL.start <= event.timestamp <= _EVAL.end
        assert event.timestamp >= created[event.item_id]
        assert event.timestamp >= last_seen.get(event.user_id, -np.inf)
        last_seen[event.user_id] = event.timestamp


def test_funnel_narrows_and_each_step_follows_the_previous_one(world: Dataset) -> None:
    kinds = Counter(e.kind for e in world.interactions)
    assert kinds[EventKind.IMPRESSION] > 3 * kinds[EventKind.CLICK]
    counts = [kinds[kind] for kind in _FUNNEL]
    assert counts == sorted(counts, reverse=True)
    assert counts[-1] > 0

    # Within a session every click, cart, purchase and rating of a product comes after
    # the step before it on that same product.
    reached: dict[tuple[str, str], set[EventKind]] = defaultdict(set)
    needs = dict(zip(_FUNNEL, (EventKind.IMPRESSION, *_FUNNEL[:-1]), strict=True))
    for event in world.interactions:
        key = (event.session_id, event.item_id)
        if event.kind in needs:
            assert needs[event.kind] in reached[key], event
        reached[key].add(event.kind)
    ratings = [e.rating for e in world.interactions if e.kind is EventKind.RATING]
    assert set(ratings) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert len(set(ratings)) >= 3


def test_out_of_stock_products_are_never_added_to_cart(world: Dataset) -> None:
    out_of_stock = {item.item_id for item in world.items if item.stock == 0}
    carted = {e.item_id for e in world.interactions if e.kind is EventKind.ADD_TO_CART}

    assert out_of_stock
    assert not carted & out_of_stock


def test_catalog_and_users_look_like_a_shop(world: Dataset) -> None:
    items, users = world.items, world.users
    departments = {item.category_path[0] for item in items}
    ages = np.array([_EVAL.end - item.created_at for item in items])
    prices = np.array([item.price for item in items])

    assert all(len(item.category_path) == 3 for item in items)
    assert len(departments) >= 8
    assert all(item.title.startswith(item.brand) for item in items)
    assert all(1 <= item.description.count(". ") + 1 <= 3 for item in items)
    assert prices.min() > 0 and prices.max() / prices.min() > 100
    assert (ages >= 0).all() and ages.max() <= 730 * SECONDS_PER_DAY
    assert (ages < 7 * SECONDS_PER_DAY).any()
    assert all(1.0 <= item.rating <= 5.0 for item in items)
    assert {user.age_band for user in users} == _AGE_BANDS
    assert {user.gender for user in users} == {"female", "male", "other"}
    assert all(user.region and user.segments for user in users)


class _LastClick:
    """Leave-last-click-out: each user's last click is the target, earlier clicks the history."""

    def __init__(self, world: Dataset) -> None:
        item_index = {item.item_id: i for i, item in enumerate(world.items)}
        user_index = {user.user_id: u for u, user in enumerate(world.users)}
        paths = sorted({item.category_path for item in world.items})
        self.leaf = np.array([paths.index(item.category_path) for item in world.items])
        clicks = [e for e in world.interactions if e.kind is EventKind.CLICK]
        last: dict[str, Interaction] = {e.user_id: e for e in clicks}
        self.popularity = np.zeros(len(world.items))
        self.user_leaf = np.zeros((len(world.users), len(paths)))
        for event in clicks:
            if last[event.user_id] is not event:
                item = item_index[event.item_id]
                self.popularity[item] += 1
                self.user_leaf[user_index[event.user_id], self.leaf[item]] += 1
        self.targets = {
            user_index[u]: item_index[e.item_id]
            for u, e in last.items()
            if self.user_leaf[user_index[u]].any()
        }

    def hit_rate(self, score: Callable[[int], npt.NDArray[np.floating[Any]]]) -> float:
        """HR@10: how often the target is among the ten best-scored products."""
        hits = [t in np.argsort(-score(u), kind="stable")[:10] for u, t in self.targets.items()]
        return float(np.mean(hits))


@pytest.fixture(scope="module")
def last_click(world: Dataset) -> _LastClick:
    return _LastClick(world)


def test_taste_oracle_beats_popularity_which_beats_random(last_click: _LastClick) -> None:
    factors = latent_factors(_EVAL)
    oracle = last_click.hit_rate(factors.utility)
    popularity = last_click.hit_rate(lambda _: last_click.popularity)

    assert len(last_click.targets) > 300
    assert oracle > 1.8 * popularity
    assert popularity > 5 * (10 / _EVAL.n_products)


def test_category_affinity_ranker_beats_popularity(last_click: _LastClick) -> None:
    def category_affinity(user: int) -> npt.NDArray[np.float64]:
        counts: npt.NDArray[np.float64] = last_click.user_leaf[user][last_click.leaf]
        return counts * 1e6 + last_click.popularity

    affinity = last_click.hit_rate(category_affinity)
    popularity = last_click.hit_rate(lambda _: last_click.popularity)

    assert affinity > 2.0 * popularity


def test_latent_factors_match_the_world() -> None:
    factors = latent_factors(_EVAL)

    assert factors.user.shape == (_EVAL.n_users, _EVAL.latent_dim)
    assert factors.item.shape == (_EVAL.n_products, _EVAL.latent_dim)
    assert factors.item_popularity.shape == (_EVAL.n_products,)


def _held_out_r2(features: list[set[str]], target: npt.NDArray[np.float64]) -> float:
    """R² on the last fifth of rows of a ridge regression of ``target`` on bag-of-words."""
    vocabulary = {word: k for k, word in enumerate(sorted(set().union(*features)))}
    x = np.zeros((len(features), len(vocabulary)))
    for row, words in enumerate(features):
        x[row, [vocabulary[w] for w in words]] = 1.0
    n = len(features) * 4 // 5
    weights = np.linalg.solve(x[:n].T @ x[:n] + np.eye(len(vocabulary)), x[:n].T @ target[:n])
    residual = ((target[n:] - x[n:] @ weights) ** 2).sum()
    return float(1.0 - residual / ((target[n:] - target[:n].mean(axis=0)) ** 2).sum())


def test_titles_and_descriptions_reveal_latent_item_vectors_beyond_the_category(
    world: Dataset,
) -> None:
    vectors = latent_factors(_EVAL).item.astype(np.float64)
    words = [
        set(re.findall(r"[a-z0-9']+", f"{i.title} {i.description}".lower())) for i in world.items
    ]
    categories = [{" > ".join(item.category_path)} for item in world.items]

    text_r2 = _held_out_r2(words, vectors)

    assert text_r2 > 0.75
    assert text_r2 > _held_out_r2(categories, vectors) + 0.15


def test_progress_bar_reports_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    list(iter_interactions(PRESETS["tiny"], progress=True))

    assert "user" in capsys.readouterr().err
