"""Sizes, seed and behaviour knobs of a synthetic world, and the named presets."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from magpie.runtime.units import SECONDS_PER_DAY

__all__ = ["PRESETS", "SyntheticConfig", "preset"]

_DEFAULT_END = 1_735_689_600.0
"""2025-01-01T00:00:00Z: a fixed clock, so that output never depends on when it is generated."""


@dataclass(frozen=True, slots=True)
class SyntheticConfig:
    """Everything the generator's output depends on; equal configs give identical worlds."""

    n_products: int = 5_000
    n_users: int = 2_000
    n_events: int = 200_000
    """Target number of interactions; the generated count lands within a few percent."""
    seed: int = 0
    start: float = _DEFAULT_END - 180 * SECONDS_PER_DAY
    """Unix seconds at which sessions begin."""
    end: float = _DEFAULT_END
    """Unix seconds at which sessions end; products are created up to two years before."""
    name: str = "synthetic"
    latent_dim: int = 16
    slate_size: int = 6
    """Products shown per page of impressions."""
    taste_weight: float = 3.0
    """How strongly clicks follow the user's latent taste."""
    popularity_weight: float = 0.8
    """How strongly clicks follow the product's latent popularity."""
    category_stickiness: float = 0.7
    """Chance that the next page of a session stays in the current leaf category."""

    def __post_init__(self) -> None:
        if self.n_products < 1 or self.n_users < 1 or self.n_events < 0:
            raise ValueError("n_products and n_users must be positive and n_events non-negative")
        if not self.start < self.end:
            raise ValueError(f"start ({self.start}) must be before end ({self.end})")
        if self.latent_dim < 2 or self.slate_size < 1:
            raise ValueError("latent_dim must be at least 2 and slate_size at least 1")
        if not 0.0 <= self.category_stickiness < 1.0:
            raise ValueError("category_stickiness must lie in [0, 1)")

    def item_id(self, index: int) -> str:
        """The id of the ``index``-th product (0-based): ``p0000001`` for the first."""
        return f"p{index + 1:0{max(7, len(str(self.n_products)))}d}"

    def user_id(self, index: int) -> str:
        """The id of the ``index``-th user (0-based): ``u000001`` for the first."""
        return f"u{index + 1:0{max(6, len(str(self.n_users)))}d}"


PRESETS: Mapping[str, SyntheticConfig] = MappingProxyType(
    {
        "tiny": SyntheticConfig(n_products=200, n_users=100, n_events=5_000, name="synthetic-tiny"),
        "small": SyntheticConfig(name="synthetic-small"),
        "medium": SyntheticConfig(
            n_products=100_000, n_users=50_000, n_events=2_000_000, name="synthetic-medium"
        ),
        "large": SyntheticConfig(
            n_products=1_000_000, n_users=300_000, n_events=10_000_000, name="synthetic-large"
        ),
    }
)
"""Named sizes: ``tiny`` for unit tests up to ``large`` (1M products, 10M events) for benchmarks."""


def preset(name: str, **overrides: int | float | str) -> SyntheticConfig:
    """The named preset, with any fields replaced (``preset("small", seed=3)``)."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]
