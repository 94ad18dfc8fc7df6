"""The latent world behind a synthetic data set: catalog and user arrays, no records yet.

Item vectors are built from the words their titles will use (leaf category
centroid + brand + style + feature + noise), so text carries latent signal.
User tastes mix a few favourite leaf centroids with a style preference.
Everything here is vectorised and drawn from one seeded generator, in a fixed
order, so the world depends on the config alone.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from magpie.datasets.synthetic._config import SyntheticConfig
from magpie.datasets.synthetic._words import DEPARTMENTS, STYLES, Leaf
from magpie.runtime.units import SECONDS_PER_DAY

__all__ = [
    "AGE_BANDS",
    "GENDERS",
    "LEAF_PATHS",
    "LEAVES",
    "REGIONS",
    "LatentFactors",
    "World",
    "build_world",
    "latent_factors",
]

Floats = npt.NDArray[np.float64]
Floats32 = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]

_FAVOURITES = 3
"""Favourite leaf categories per user."""

LEAVES: tuple[Leaf, ...] = tuple(
    leaf for dept in DEPARTMENTS for sub in dept.subcategories for leaf in sub.leaves
)
LEAF_PATHS: tuple[tuple[str, str, str], ...] = tuple(
    (dept.name, sub.name, leaf.name)
    for dept in DEPARTMENTS
    for sub in dept.subcategories
    for leaf in sub.leaves
)
_LEAF_DEPT = np.array(
    [d for d, dept in enumerate(DEPARTMENTS) for sub in dept.subcategories for _ in sub.leaves]
)
_LEAF_SUB = np.array(
    [
        s
        for s, sub in enumerate(sub for dept in DEPARTMENTS for sub in dept.subcategories)
        for _ in sub.leaves
    ]
)
_BRAND_DEPT = np.array([d for d, dept in enumerate(DEPARTMENTS) for _ in dept.brands])
_BRAND_START = np.cumsum([0] + [len(dept.brands) for dept in DEPARTMENTS])[:-1]
_BRAND_COUNT = np.array([len(dept.brands) for dept in DEPARTMENTS])
_N_NOUNS = np.array([len(leaf.nouns) for leaf in LEAVES])
_N_VARIANTS = np.array([len(leaf.variants) for leaf in LEAVES])
_N_FEATURES = np.array([len(leaf.features) for leaf in LEAVES])
_LOG_MEDIAN_PRICE = np.log([leaf.median_price for leaf in LEAVES])
_STYLE_PRICE_SHIFT = np.array([style.price_shift for style in STYLES] + [0.0])
"""Indexed by style, with -1 (no style) picking the trailing zero."""

AGE_BANDS = ("under_18", "18_24", "25_34", "35_44", "45_54", "55_64", "65_plus")
_AGE_P = np.array([0.05, 0.14, 0.24, 0.2, 0.17, 0.12, 0.08])
GENDERS = ("female", "male", "other")
_GENDER_P = np.array([0.49, 0.47, 0.04])
REGIONS = ("DE", "FR", "IT", "ES", "NL", "PL", "SE", "BE", "AT", "IE")
_REGION_P = np.array([0.22, 0.18, 0.14, 0.12, 0.08, 0.08, 0.06, 0.05, 0.04, 0.03])
# Department preference multipliers (Electronics, Home, Fashion, Sports, Beauty, Books, Toys,
# Grocery) by age band and by gender.
_AGE_DEPT = np.array(
    [
        [1.3, 0.4, 1.3, 1.2, 1.0, 0.9, 1.0, 0.5],
        [1.4, 0.6, 1.4, 1.2, 1.2, 0.9, 0.5, 0.8],
        [1.2, 1.1, 1.2, 1.1, 1.0, 0.9, 1.3, 1.0],
        [1.0, 1.3, 1.0, 1.0, 0.9, 1.0, 1.6, 1.1],
        [0.9, 1.3, 0.9, 0.9, 0.9, 1.1, 1.0, 1.2],
        [0.8, 1.3, 0.8, 0.8, 0.9, 1.3, 0.8, 1.3],
        [0.6, 1.2, 0.7, 0.6, 0.8, 1.5, 0.8, 1.4],
    ]
)
_GENDER_DEPT = np.array(
    [
        [0.8, 1.1, 1.4, 0.9, 1.8, 1.1, 1.0, 1.0],
        [1.5, 0.9, 0.8, 1.4, 0.5, 0.9, 0.9, 1.0],
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    ]
)


@dataclass(frozen=True, slots=True)
class LatentFactors:
    """Ground truth: row ``i`` belongs to the ``i``-th user or item the generator yields.

    A user's click logit for a shown product is ``taste_weight * user @ item +
    popularity_weight * item_popularity`` (plus novelty and noise).
    """

    user: Floats32
    item: Floats32
    item_popularity: Floats32
    taste_weight: float
    popularity_weight: float

    def utility(self, user: int) -> Floats32:
        """The true click utility of every item for the ``user``-th user (novelty aside)."""
        scores: Floats32 = self.taste_weight * (self.item @ self.user[user])
        return scores + np.float32(self.popularity_weight) * self.item_popularity


@dataclass(frozen=True, slots=True)
class World:
    """Per-item and per-user arrays the record builders and the event simulator share."""

    config: SyntheticConfig
    # catalog
    item_leaf: Ints
    item_brand: Ints
    item_styles: Ints
    """(n_products, 2) style indices, -1 where the product has none."""
    item_noun: Ints
    item_variant: Ints
    """-1 where the title carries no variant."""
    item_feature: Ints
    item_adjective: Ints
    item_template: Ints
    item_benefit: Ints
    item_vector: Floats32
    item_popularity: Floats32
    item_price: Floats
    item_log_price_ratio: Floats32
    """log(price / leaf median price): how expensive a product is for its kind."""
    item_stock: Ints
    item_created_at: Floats
    item_rating: Floats
    leaf_items: Ints
    """Item indices grouped by leaf, most popular first within a leaf."""
    leaf_start: Ints
    leaf_count: Ints
    popular_items: Ints
    """Item indices, most popular first."""
    leaf_weight: Floats
    """Probability of exploring each leaf (zero for empty leaves)."""
    # users
    user_taste: Floats32
    user_favourites: Ints
    """(n_users, 3) favourite leaves, the strongest first."""
    user_favourite_cdf: Floats
    user_activity: Floats
    user_style: Ints
    user_price_sensitivity: Floats32
    user_age: Ints
    user_gender: Ints
    user_region: Ints


def _unit_noise(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> Floats:
    """Gaussian vectors whose norm is about ``scale``."""
    noise: Floats = rng.standard_normal(shape) * (scale / np.sqrt(shape[-1]))
    return noise


def _pick(rng: np.random.Generator, counts: Ints) -> Ints:
    """A uniform index below each of ``counts``."""
    return (rng.random(counts.shape) * counts).astype(np.int64)


def _sample_rows(rng: np.random.Generator, cdf: Floats) -> Ints:
    """One column per row of a row-wise cumulative distribution (last column 1)."""
    u = rng.random(cdf.shape[0])
    column: Ints = np.minimum((u[:, None] > cdf).sum(axis=1), cdf.shape[1] - 1)
    return column


@dataclass(frozen=True, slots=True)
class _LatentSpace:
    """The latent vectors products and users are built from."""

    leaf_centroid: Floats
    style_vec: Floats
    feature_vec: Floats
    """(n_leaves, max features, d): one vector per leaf feature word."""
    brand_style: Ints
    """Each brand's signature style."""
    brand_vec: Floats
    brand_popularity: Floats
    brand_price: Floats
    """Each brand's log price offset."""


@dataclass(frozen=True, slots=True)
class _Catalog:
    """The per-product arrays, plus the leaf tables derived from them."""

    leaf: Ints
    brand: Ints
    styles: Ints
    feature: Ints
    variant: Ints
    vector: Floats32
    popularity: Floats32
    price: Floats
    stock: Ints
    age: Floats
    """Seconds before ``config.end`` at which each product was created."""
    rating: Floats
    by_leaf: Ints
    leaf_count: Ints
    leaf_weight: Floats
    """Unnormalised leaf sizes, zero for empty leaves."""


@dataclass(frozen=True, slots=True)
class _Users:
    """The per-user arrays."""

    age: Ints
    gender: Ints
    region: Ints
    favourites: Ints
    favourite_weights: Floats
    """(n_users, 3) weights of the favourite leaves, descending."""
    style: Ints
    taste: Floats32
    activity: Floats
    price_sensitivity: Floats32


@dataclass(frozen=True, slots=True)
class _TitleWords:
    """Per-product word choices that only shape titles and descriptions."""

    noun: Ints
    adjective: Ints
    template: Ints
    benefit: Ints


def _latent_space(rng: np.random.Generator, d: int) -> _LatentSpace:
    """Hierarchical category centroids (department + subcategory + leaf), styles, brands."""
    n_leaves, n_depts, n_styles = len(LEAVES), len(DEPARTMENTS), len(STYLES)
    n_brands = len(_BRAND_DEPT)
    dept_vec = _unit_noise(rng, (n_depts, d), 1.0)
    sub_vec = _unit_noise(rng, (int(_LEAF_SUB.max()) + 1, d), 0.6)[_LEAF_SUB]
    leaf_centroid = dept_vec[_LEAF_DEPT] + sub_vec + _unit_noise(rng, (n_leaves, d), 0.5)
    style_vec = _unit_noise(rng, (n_styles, d), 0.8)
    feature_vec = _unit_noise(rng, (n_leaves, int(_N_FEATURES.max()), d), 0.35)
    brand_style = rng.integers(n_styles, size=n_brands)
    brand_vec = 0.5 * style_vec[brand_style] + _unit_noise(rng, (n_brands, d), 0.3)
    brand_popularity = rng.standard_normal(n_brands)
    brand_price = rng.normal(0.0, 0.25, n_brands)
    return _LatentSpace(
        leaf_centroid=leaf_centroid,
        style_vec=style_vec,
        feature_vec=feature_vec,
        brand_style=brand_style,
        brand_vec=brand_vec,
        brand_popularity=brand_popularity,
        brand_price=brand_price,
    )


def _product_leaves(rng: np.random.Generator, n: int) -> tuple[Ints, Floats]:
    """Each product's leaf, and the leaf sizes drawn from; every leaf is used when ``n`` allows."""
    n_leaves = len(LEAVES)
    leaf_size = rng.lognormal(0.0, 0.6, n_leaves)
    leaf = rng.choice(n_leaves, size=n, p=leaf_size / leaf_size.sum())
    covered = min(n, n_leaves)
    leaf[:covered] = rng.permutation(n_leaves)[:covered]
    return leaf, leaf_size


def _product_styles(rng: np.random.Generator, brand_style: Ints) -> Ints:
    """(n, 2) styles: mostly the brand's own first, sometimes a second (-1 for none)."""
    n, n_styles = brand_style.size, len(STYLES)
    source = rng.random(n)
    first_style = np.where(
        source < 0.55,
        brand_style,
        np.where(source < 0.8, rng.integers(n_styles, size=n), -1),
    )
    second_style = np.where(rng.random(n) < 0.25, rng.integers(n_styles, size=n), -1)
    second_style[second_style == first_style] = -1
    return np.stack([first_style, second_style], axis=1)


def _catalog(rng: np.random.Generator, config: SyntheticConfig, space: _LatentSpace) -> _Catalog:
    """Products: leaf, brand and styles first, then the vector and attributes built on them."""
    n, d = config.n_products, config.latent_dim
    leaf, leaf_size = _product_leaves(rng, n)
    dept = _LEAF_DEPT[leaf]
    brand = _BRAND_START[dept] + (_BRAND_COUNT[dept] * rng.random(n) ** 1.5).astype(np.int64)
    styles = _product_styles(rng, space.brand_style[brand])
    feature = _pick(rng, _N_FEATURES[leaf])
    with_style = (styles >= 0)[:, :, None]
    vector = (
        space.leaf_centroid[leaf]
        + space.brand_vec[brand]
        + (np.where(with_style, space.style_vec[styles], 0.0) * 0.7).sum(axis=1)
        + space.feature_vec[leaf, feature]
        + _unit_noise(rng, (n, d), 0.35)
    ).astype(np.float32)
    popularity = (0.5 * space.brand_popularity[brand] + rng.normal(0.0, 0.9, n)).astype(np.float32)
    log_ratio = (
        space.brand_price[brand] + _STYLE_PRICE_SHIFT[styles].sum(axis=1) + rng.normal(0.0, 0.35, n)
    )
    raw_price = np.exp(_LOG_MEDIAN_PRICE[leaf] + log_ratio)
    price = np.where(raw_price >= 5.0, np.floor(raw_price) + 0.99, np.round(raw_price, 2))
    stock = np.where(
        rng.random(n) < 0.07, 0, rng.lognormal(np.log(40.0), 1.0, n).astype(np.int64) + 1
    )
    age = np.where(
        rng.random(n) < 0.03,
        rng.uniform(0.0, 7 * SECONDS_PER_DAY, n),
        rng.uniform(7 * SECONDS_PER_DAY, 730 * SECONDS_PER_DAY, n),
    )
    rating = np.round(np.clip(4.0 + 0.3 * popularity + rng.normal(0.0, 0.35, n), 1.0, 5.0), 1)
    variant = np.where(rng.random(n) < 0.2, -1, _pick(rng, _N_VARIANTS[leaf]))
    leaf_count = np.bincount(leaf, minlength=len(LEAVES))
    return _Catalog(
        leaf=leaf,
        brand=brand,
        styles=styles,
        feature=feature,
        variant=variant,
        vector=vector,
        popularity=popularity,
        price=price,
        stock=stock,
        age=age,
        rating=rating,
        by_leaf=np.lexsort((-popularity, leaf)),
        leaf_count=leaf_count,
        leaf_weight=np.where(leaf_count > 0, leaf_size, 0.0),
    )


def _department_leaves(leaf_weight: Floats) -> tuple[Ints, Floats]:
    """Each department's leaves (padded with -1) and the row-wise CDF of their weights."""
    n_depts = len(DEPARTMENTS)
    width = int(np.bincount(_LEAF_DEPT).max())
    dept_leaves = np.full((n_depts, width), -1)
    in_dept_weight = np.zeros((n_depts, width))
    for d_index in range(n_depts):
        members = np.flatnonzero(np.equal(_LEAF_DEPT, d_index))
        dept_leaves[d_index, : members.size] = members
        in_dept_weight[d_index, : members.size] = leaf_weight[members]
    # Departments without products (tiny catalogs) are never drawn; keep their rows finite.
    in_dept_cdf = np.cumsum(in_dept_weight, axis=1) / np.maximum(
        in_dept_weight.sum(axis=1, keepdims=True), 1e-12
    )
    return dept_leaves, in_dept_cdf


def _favourite_leaves(rng: np.random.Generator, dept_cdf: Floats, leaf_weight: Floats) -> Ints:
    """(n_users, 3) favourite leaves: the first two often share a department."""
    dept_leaves, in_dept_cdf = _department_leaves(leaf_weight)
    primary = _sample_rows(rng, dept_cdf)
    favourite_depts = np.stack(
        [
            primary,
            np.where(rng.random(primary.size) < 0.5, primary, _sample_rows(rng, dept_cdf)),
            _sample_rows(rng, dept_cdf),
        ],
        axis=1,
    )
    return np.stack(
        [
            dept_leaves[
                favourite_depts[:, k], _sample_rows(rng, in_dept_cdf[favourite_depts[:, k]])
            ]
            for k in range(_FAVOURITES)
        ],
        axis=1,
    )


def _users(
    rng: np.random.Generator, config: SyntheticConfig, space: _LatentSpace, catalog: _Catalog
) -> _Users:
    """Users: demographics, favourite leaves (skewed by demographics), then taste and activity."""
    u, d = config.n_users, config.latent_dim
    user_age = rng.choice(len(AGE_BANDS), size=u, p=_AGE_P)
    user_gender = rng.choice(len(GENDERS), size=u, p=_GENDER_P)
    user_region = rng.choice(len(REGIONS), size=u, p=_REGION_P)
    dept_mass = np.bincount(_LEAF_DEPT, weights=catalog.leaf_weight, minlength=len(DEPARTMENTS))
    dept_pref = dept_mass * _AGE_DEPT[user_age] * _GENDER_DEPT[user_gender]
    dept_cdf = np.cumsum(dept_pref, axis=1) / dept_pref.sum(axis=1, keepdims=True)
    favourites = _favourite_leaves(rng, dept_cdf, catalog.leaf_weight)
    weights = -np.sort(-rng.dirichlet(np.ones(_FAVOURITES), size=u), axis=1)
    user_style = np.where(rng.random(u) < 0.75, rng.integers(len(STYLES), size=u), -1)
    taste = (
        (weights[:, :, None] * space.leaf_centroid[favourites]).sum(axis=1)
        + np.where((user_style >= 0)[:, None], 0.8 * space.style_vec[user_style], 0.0)
        + _unit_noise(rng, (u, d), 0.3)
    ).astype(np.float32)
    activity = rng.lognormal(0.0, 1.0, u)
    activity /= activity.mean()
    sensitivity = (1.0 + 0.8 * (user_style == 1) - 0.6 * (user_style == 0)).astype(np.float32)
    return _Users(
        age=user_age,
        gender=user_gender,
        region=user_region,
        favourites=favourites,
        favourite_weights=weights,
        style=user_style,
        taste=taste,
        activity=activity,
        price_sensitivity=sensitivity,
    )


def _title_words(rng: np.random.Generator, leaf: Ints) -> _TitleWords:
    """Title word choices, drawn last so that they never shift the latent draws."""
    n = leaf.size
    return _TitleWords(
        noun=_pick(rng, _N_NOUNS[leaf]),
        adjective=rng.integers(3, size=n),
        template=rng.integers(3, size=n),
        benefit=rng.integers(4, size=n),
    )


@functools.lru_cache(maxsize=1)
def build_world(config: SyntheticConfig) -> World:
    """The latent world of ``config`` (cached: the record streams of one config share it)."""
    # One generator, drawn in a fixed order: latent space, catalog, users, title words.
    rng = np.random.default_rng([config.seed, 0])
    space = _latent_space(rng, config.latent_dim)
    catalog = _catalog(rng, config, space)
    users = _users(rng, config, space, catalog)
    words = _title_words(rng, catalog.leaf)
    leaf_count = catalog.leaf_count
    world = World(
        config=config,
        item_leaf=catalog.leaf,
        item_brand=catalog.brand,
        item_styles=catalog.styles,
        item_noun=words.noun,
        item_variant=catalog.variant,
        item_feature=catalog.feature,
        item_adjective=words.adjective,
        item_template=words.template,
        item_benefit=words.benefit,
        item_vector=catalog.vector,
        item_popularity=catalog.popularity,
        item_price=catalog.price,
        item_log_price_ratio=(np.log(catalog.price) - _LOG_MEDIAN_PRICE[catalog.leaf]).astype(
            np.float32
        ),
        item_stock=catalog.stock,
        item_created_at=config.end - catalog.age,
        item_rating=catalog.rating,
        leaf_items=catalog.by_leaf,
        leaf_start=np.cumsum(leaf_count) - leaf_count,
        leaf_count=leaf_count,
        popular_items=np.argsort(-catalog.popularity, kind="stable"),
        leaf_weight=catalog.leaf_weight / catalog.leaf_weight.sum(),
        user_taste=users.taste,
        user_favourites=users.favourites,
        user_favourite_cdf=np.cumsum(users.favourite_weights, axis=1),
        user_activity=users.activity,
        user_style=users.style,
        user_price_sensitivity=users.price_sensitivity,
        user_age=users.age,
        user_gender=users.gender,
        user_region=users.region,
    )
    for field in dataclasses.fields(world):
        value = getattr(world, field.name)
        if isinstance(value, np.ndarray):
            value.flags.writeable = False  # the world is cached and shared
    return world


def latent_factors(config: SyntheticConfig) -> LatentFactors:
    """The true user tastes and item vectors behind ``config``'s interactions."""
    world = build_world(config)
    return LatentFactors(
        user=world.user_taste,
        item=world.item_vector,
        item_popularity=world.item_popularity,
        taste_weight=config.taste_weight,
        popularity_weight=config.popularity_weight,
    )
