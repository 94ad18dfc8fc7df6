"""A synthetic e-commerce world: a product catalog, users and their sessions.

Products get realistic titles, descriptions, a three-level category path,
brands, prices, stock and creation dates; users get demographics and a latent
taste; interactions (impressions, clicks, add-to-carts, purchases, ratings)
follow those tastes, product popularity and within-session category drift, so
personalised models measurably beat popularity. Item vectors are built from the
words of their titles and descriptions, so text-aware models can use them too.

Everything is deterministic in the config and streamed in batches; output does
not depend on the batch size. ``latent_factors`` exposes the ground truth::

    config = preset("small", seed=7)
    for batch in iter_interactions(config, batch_size=50_000, progress=True):
        ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from tqdm import tqdm

from magpie.datasets.schema import Dataset, Interaction, Item, User
from magpie.datasets.synthetic._config import PRESETS, SyntheticConfig, preset
from magpie.datasets.synthetic._events import USER_BLOCK, block_interactions
from magpie.datasets.synthetic._records import items, users
from magpie.datasets.synthetic._world import LatentFactors, build_world, latent_factors

__all__ = [
    "PRESETS",
    "LatentFactors",
    "SyntheticConfig",
    "generate",
    "iter_interactions",
    "iter_items",
    "iter_users",
    "latent_factors",
    "preset",
]

_T = TypeVar("_T")
_DEFAULT_BATCH = 10_000


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")


def _slices(
    total: int, batch_size: int, make: Callable[[int, int], list[_T]], progress: bool, unit: str
) -> Iterator[list[_T]]:
    _check_batch_size(batch_size)
    with tqdm(total=total, unit=unit, disable=not progress) as bar:
        for begin in range(0, total, batch_size):
            stop = min(begin + batch_size, total)
            yield make(begin, stop)
            bar.update(stop - begin)


def iter_items(
    config: SyntheticConfig, batch_size: int = _DEFAULT_BATCH, *, progress: bool = False
) -> Iterator[list[Item]]:
    """The catalog in batches of at most ``batch_size`` products, ids in order."""
    world = build_world(config)
    return _slices(config.n_products, batch_size, lambda a, b: items(world, a, b), progress, "item")


def iter_users(
    config: SyntheticConfig, batch_size: int = _DEFAULT_BATCH, *, progress: bool = False
) -> Iterator[list[User]]:
    """The users in batches of at most ``batch_size``, ids in order."""
    world = build_world(config)
    return _slices(config.n_users, batch_size, lambda a, b: users(world, a, b), progress, "user")


def iter_interactions(
    config: SyntheticConfig, batch_size: int = _DEFAULT_BATCH, *, progress: bool = False
) -> Iterator[list[Interaction]]:
    """All interactions in batches of at most ``batch_size``, ordered by user and then time.

    The progress bar counts users; about ``config.n_events`` interactions come out in all.
    """
    _check_batch_size(batch_size)
    world = build_world(config)
    pending: list[Interaction] = []
    with tqdm(total=config.n_users, unit="user", disable=not progress) as bar:
        for block in range(-(-config.n_users // USER_BLOCK)):
            pending.extend(block_interactions(world, block))
            while len(pending) >= batch_size:
                yield pending[:batch_size]
                del pending[:batch_size]
            bar.update(min(USER_BLOCK, config.n_users - block * USER_BLOCK))
    if pending:
        yield pending


def generate(config: SyntheticConfig) -> Dataset:
    """The whole world in memory; meant for sizes up to ``small`` or so."""
    return Dataset(
        name=config.name,
        items=[item for batch in iter_items(config) for item in batch],
        users=[user for batch in iter_users(config) for user in batch],
        interactions=[event for batch in iter_interactions(config) for event in batch],
    )
