"""Product and user records spelled out from the latent world."""

from __future__ import annotations

from magpie.datasets.schema import Item, User
from magpie.datasets.synthetic._words import DEPARTMENTS, STYLES
from magpie.datasets.synthetic._world import (
    AGE_BANDS,
    GENDERS,
    LEAF_PATHS,
    LEAVES,
    REGIONS,
    World,
)
from magpie.runtime.units import SECONDS_PER_DAY

__all__ = ["items", "users"]

_BRANDS = tuple(brand for dept in DEPARTMENTS for brand in dept.brands)
_BENEFITS = tuple(dept.benefits for dept in DEPARTMENTS for _ in dept.brands)
"""Indexed by brand, whose department decides the benefit sentences."""
_LEAF_SEGMENT = tuple(
    dept.segment for dept in DEPARTMENTS for sub in dept.subcategories for _ in sub.leaves
)
_PLAIN_PHRASE = "reliable quality for everyday use"
_STYLE_SEGMENTS = {"premium": "premium_shopper", "value": "bargain_hunter", "eco": "eco_conscious"}
_FREQUENT, _OCCASIONAL = 2.5, 0.3
"""Activity levels (1 = average) above or below which a user is tagged frequent or occasional."""


def items(world: World, start: int, stop: int) -> list[Item]:
    """Products ``start`` to ``stop`` (exclusive) of the catalog."""
    config = world.config
    rows = zip(
        range(start, stop),
        world.item_leaf[start:stop].tolist(),
        world.item_brand[start:stop].tolist(),
        world.item_styles[start:stop].tolist(),
        world.item_noun[start:stop].tolist(),
        world.item_variant[start:stop].tolist(),
        world.item_feature[start:stop].tolist(),
        world.item_adjective[start:stop].tolist(),
        world.item_template[start:stop].tolist(),
        world.item_benefit[start:stop].tolist(),
        world.item_price[start:stop].tolist(),
        world.item_stock[start:stop].tolist(),
        world.item_rating[start:stop].tolist(),
        world.item_created_at[start:stop].tolist(),
        strict=True,
    )
    records = []
    for (
        index,
        leaf_index,
        brand_index,
        styles,
        noun_i,
        variant_i,
        feature_i,
        adjective,
        template,
        benefit,
        price,
        stock,
        rating,
        created_at,
    ) in rows:
        leaf = LEAVES[leaf_index]
        brand = _BRANDS[brand_index]
        noun = leaf.nouns[noun_i]
        feature = leaf.features[feature_i]
        variant = leaf.variants[variant_i] if variant_i >= 0 else ""
        item_styles = [STYLES[s] for s in styles if s >= 0]
        title_words = [brand]
        if item_styles:
            title_words.append(item_styles[0].adjectives[adjective])
        if template != 2:
            title_words.append(feature)
        title_words.append(noun)
        if variant:
            title_words.append(variant)
        phrase = item_styles[0].phrase if item_styles else _PLAIN_PHRASE
        if template == 0:
            sentences = [f"The {brand} {noun} offers {phrase}."]
        elif template == 1:
            sentences = [f"{brand}'s {feature} {noun}: {phrase}."]
        else:
            sentences = [f"Meet the {noun} by {brand}, with {phrase}."]
        if len(item_styles) > 1:
            sentences.append(f"Expect {item_styles[1].phrase}.")
        if benefit < len(_BENEFITS[brand_index]):
            sentences.append(_BENEFITS[brand_index][benefit])
        tags = [leaf.name.lower(), feature.lower(), *(style.name for style in item_styles)]
        if config.end - created_at < 30 * SECONDS_PER_DAY:
            tags.append("new_arrival")
        attributes = {"feature": feature}
        if variant:
            attributes["variant"] = variant
        records.append(
            Item(
                item_id=config.item_id(index),
                title=" ".join(title_words),
                description=" ".join(sentences),
                category_path=LEAF_PATHS[leaf_index],
                brand=brand,
                tags=tuple(tags),
                price=price,
                stock=stock,
                rating=rating,
                created_at=created_at,
                attributes=attributes,
            )
        )
    return records


def users(world: World, start: int, stop: int) -> list[User]:
    """Users ``start`` to ``stop`` (exclusive), segments derived from their latent taste."""
    config = world.config
    rows = zip(
        range(start, stop),
        world.user_favourites[start:stop, 0].tolist(),
        world.user_style[start:stop].tolist(),
        world.user_activity[start:stop].tolist(),
        world.user_age[start:stop].tolist(),
        world.user_gender[start:stop].tolist(),
        world.user_region[start:stop].tolist(),
        strict=True,
    )
    records = []
    for index, favourite, style, activity, age, gender, region in rows:
        segments = [_LEAF_SEGMENT[favourite]]
        if style >= 0 and STYLES[style].name in _STYLE_SEGMENTS:
            segments.append(_STYLE_SEGMENTS[STYLES[style].name])
        if activity > _FREQUENT:
            segments.append("frequent_shopper")
        elif activity < _OCCASIONAL:
            segments.append("occasional_shopper")
        records.append(
            User(
                user_id=config.user_id(index),
                age_band=AGE_BANDS[age],
                gender=GENDERS[gender],
                region=REGIONS[region],
                segments=tuple(segments),
            )
        )
    return records
