"""The insight pages: a user's portrait, a product, and the model versions.

Each page reads only the services' public gRPC APIs, through the Gateway with the viewer's
own token (a failed call becomes the console's error page, web.grpc_failure), then turns
what it read into its template's context with a pure function (``*_context``), charts
drawn as server-side SVG by services.console.charts.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import EnumDescriptor
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from magpie.runtime.filters import CATEGORY_SEPARATOR
from magpie.v1 import catalog_pb2, common_pb2, models_pb2, profiles_pb2, retrieval_pb2
from services.console import charts, config
from services.console.auth import Viewer
from services.console.gateway import Gateway
from services.console.web import base_of, gateway_of, grpc_failure, render, segment, viewer_of

__all__ = [
    "ROUTES",
    "Figure",
    "Item",
    "models_context",
    "offline_groups",
    "portrait_context",
    "product_context",
]

HISTORY = 50
"""Recent interactions a portrait reads."""
ACTIVITY_DAYS = 30
NEIGHBOURS = 10
"""Nearest products listed per source on a product page."""
KEY_METRICS = ("NDCG@10", "HR@10")
"""Offline metrics of the gate drawn per version."""
MODELS = {
    "candidate": "this version",
    "candidate_fp32": "this, fp32",
    "champion": "champion then",
    "popularity": "popularity",
    "covisitation": "co-visitation",
}
"""Models the gate measured (the candidate, its fp32 twin, the champion of the time, the
baselines), in the order drawn, with their names on the page."""
AGE_BANDS = {
    profiles_pb2.AGE_BAND_UNDER_18: "under 18",
    profiles_pb2.AGE_BAND_18_24: "18-24",
    profiles_pb2.AGE_BAND_25_34: "25-34",
    profiles_pb2.AGE_BAND_35_44: "35-44",
    profiles_pb2.AGE_BAND_45_54: "45-54",
    profiles_pb2.AGE_BAND_55_64: "55-64",
    profiles_pb2.AGE_BAND_65_PLUS: "65 or older",
}
WINDOWS = {
    profiles_pb2.FEATURE_WINDOW_ALL_TIME: "all time",
    profiles_pb2.FEATURE_WINDOW_30D: "30 days",
    profiles_pb2.FEATURE_WINDOW_7D: "7 days",
}
"""Affinity windows, longest first: a portrait draws the longest one the profile has."""

Products = Mapping[str, catalog_pb2.Product]


@dataclass(frozen=True)
class Figure:
    """A chart and its caption (also the chart's accessible name)."""

    caption: str
    chart: Markup


@dataclass(frozen=True)
class Item:
    """A product as a line of a list: its id stands in for the title when the catalog
    lacks it."""

    product_id: str
    title: str
    category: str


@dataclass(frozen=True)
class Event:
    item: Item
    kind: str
    when: str


@dataclass(frozen=True)
class Neighbour:
    item: Item
    score: float


@dataclass(frozen=True)
class VersionView:
    version: models_pb2.ModelVersion
    created: str
    figure: Figure | None
    """Its key offline metrics; None for a version the gate has not measured."""


async def portrait(request: Request) -> Response:
    """`users/{user_id}/portrait`: attributes, consent, behaviour charts and history."""
    user_id: str = request.path_params["user_id"]
    viewer, gateway = viewer_of(request), gateway_of(request)
    try:
        reply = await gateway.profiles.GetProfile(
            profiles_pb2.GetProfileRequest(user_id=user_id, history_limit=HISTORY),
            metadata=gateway.metadata(viewer),
            timeout=config.CALL_SECONDS,
        )
        profile = reply.profile
        products = await gateway.products(
            viewer,
            [i.product_id for i in profile.recent_interactions]
            + list(profile.purchased_product_ids)
            + list(profile.disliked_product_ids),
        )
    except grpc.aio.AioRpcError as error:
        return grpc_failure(request, error)
    return _page(request, "portrait.html", portrait_context(user_id, profile, products))


async def product(request: Request) -> Response:
    """`products/{product_id}`: details, daily activity, nearest by text and by
    co-visitation."""
    product_id: str = request.path_params["product_id"]
    viewer, gateway = viewer_of(request), gateway_of(request)
    metadata = gateway.metadata(viewer)
    try:
        found, activity, by_text, by_covisitation = await asyncio.gather(
            gateway.catalog.GetProducts(
                catalog_pb2.GetProductsRequest(product_ids=[product_id], include_inactive=True),
                metadata=metadata,
                timeout=config.CALL_SECONDS,
            ),
            gateway.catalog.GetProductActivity(
                catalog_pb2.GetProductActivityRequest(product_id=product_id, days=ACTIVITY_DAYS),
                metadata=metadata,
                timeout=config.CALL_SECONDS,
            ),
            _similar(gateway, viewer, product_id, common_pb2.CANDIDATE_SOURCE_CONTENT),
            _similar(gateway, viewer, product_id, common_pb2.CANDIDATE_SOURCE_COVISITATION),
        )
        if not found.products:
            return render(
                request,
                "error.html",
                {"title": "Not found", "details": [f"No product {product_id} in the catalog."]},
                status=404,
            )
        products = await gateway.products(
            viewer, [c.product_id for c in [*by_text.candidates, *by_covisitation.candidates]]
        )
    except grpc.aio.AioRpcError as error:
        return grpc_failure(request, error)
    return _page(
        request,
        "product.html",
        product_context(found.products[0], activity.days, by_text, by_covisitation, products),
    )


async def models(request: Request) -> Response:
    """`models`: registry versions with gate verdicts and offline metrics, the promotion log,
    and online metrics per version with their confidence intervals."""
    viewer, gateway = viewer_of(request), gateway_of(request)
    metadata = gateway.metadata(viewer)
    try:
        registry, online = await asyncio.gather(
            gateway.models.ListModelVersions(
                models_pb2.ListModelVersionsRequest(limit=config.MODEL_VERSIONS),
                metadata=metadata,
                timeout=config.CALL_SECONDS,
            ),
            gateway.models.GetOnlineMetrics(
                models_pb2.GetOnlineMetricsRequest(),
                metadata=metadata,
                timeout=config.CALL_SECONDS,
            ),
        )
    except grpc.aio.AioRpcError as error:
        return grpc_failure(request, error)
    return _page(request, "models.html", models_context(registry, online))


async def compare_for_user(request: Request) -> Response:
    """The models page's "compare for user" box (`models/compare?user_id=..`): a redirect
    to that user's side-by-side page, as a plain form cannot put its value into a path."""
    user_id = request.query_params.get("user_id", "").strip()
    target = f"users/{segment(user_id)}/compare" if user_id else "models"
    return RedirectResponse(base_of(request) + target, status_code=303)


ROUTES = [
    Route("/users/{user_id}/portrait", portrait),
    Route("/products/{product_id}", product),
    Route("/models", models),
    Route("/models/compare", compare_for_user),
]


def portrait_context(
    user_id: str, profile: profiles_pb2.Profile, products: Products
) -> dict[str, Any]:
    """What portrait.html shows. Consent left unstated is no objection; behaviour is drawn
    only for a user who allows analytics (and personalisation, without which the profile
    comes without behaviour)."""
    attributes = profile.attributes
    stated = attributes.HasField("consent")
    personalization = not stated or attributes.consent.personalization
    analytics = not stated or attributes.consent.analytics
    recent = profile.recent_interactions
    return {
        "user_id": user_id,
        "profile": profile,
        "consent_stated": stated,
        "personalization": personalization,
        "analytics": analytics,
        "age_band": AGE_BANDS.get(attributes.age_band, ""),
        "gender": _enum_text(profiles_pb2.Gender.DESCRIPTOR, attributes.gender),
        "updated": _when(profile.updated_at),
        "figures": _behaviour_figures(profile) if analytics and personalization else [],
        "recent": [
            Event(_item(i.product_id, products), _event_text(i.event_type), _when(i.occurred_at))
            for i in recent
            if i.event_type != common_pb2.EVENT_TYPE_IMPRESSION
        ],
        "impressions": sum(i.event_type == common_pb2.EVENT_TYPE_IMPRESSION for i in recent),
        "purchased": [_item(pid, products) for pid in profile.purchased_product_ids],
        "disliked": [_item(pid, products) for pid in profile.disliked_product_ids],
    }


def product_context(
    shown: catalog_pb2.Product,
    days: Sequence[catalog_pb2.DailyActivity],
    by_text: retrieval_pb2.SimilarProductsResponse,
    by_covisitation: retrieval_pb2.SimilarProductsResponse,
    products: Products,
) -> dict[str, Any]:
    """What product.html shows."""
    return {
        "product": shown,
        "category": CATEGORY_SEPARATOR.join(shown.category_path),
        "status": _enum_text(catalog_pb2.ProductStatus.DESCRIPTOR, shown.status),
        "updated": _when(shown.updated_at),
        "figures": _activity_figures(days),
        "by_text": _neighbours(by_text.candidates, products),
        "by_covisitation": _neighbours(by_covisitation.candidates, products),
    }


def models_context(
    registry: models_pb2.ListModelVersionsResponse, online: models_pb2.GetOnlineMetricsResponse
) -> dict[str, Any]:
    """What models.html shows."""
    return {
        "model_name": registry.model_name,
        "versions": [_version_view(v) for v in registry.versions],
        "promotions": [(p, _when(p.at)) for p in registry.promotions],
        "online": online.versions,
        "online_figure": _online_figure(online.versions),
        "comparable": any("previous" in v.aliases for v in registry.versions),
    }


def offline_groups(metrics: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """The gate's flattened metrics ("candidate.NDCG@10": 0.3) as metric -> model -> value
    for the KEY_METRICS, models in MODELS order (then any other, by name) under their page
    names; empty when the gate measured none."""
    models: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        model, _, metric = key.rpartition(".")
        if metric in KEY_METRICS and model:
            models.setdefault(model, {})[metric] = value
    order = sorted(models, key=lambda m: (list(MODELS).index(m) if m in MODELS else len(MODELS), m))
    return {
        metric: {MODELS.get(m, m): models[m][metric] for m in order if metric in models[m]}
        for metric in KEY_METRICS
        if any(metric in models[m] for m in order)
    }


def _page(request: Request, name: str, context: dict[str, Any]) -> Response:
    """Template `name` with the chart styles linked (base.html's ``charts_css``)."""
    return render(request, name, {**context, "charts_css": True})


async def _similar(
    gateway: Gateway, viewer: Viewer, product_id: str, source: common_pb2.CandidateSource.ValueType
) -> retrieval_pb2.SimilarProductsResponse:
    reply: retrieval_pb2.SimilarProductsResponse = await gateway.retrieval.SimilarProducts(
        retrieval_pb2.SimilarProductsRequest(
            product_id=product_id, limit=NEIGHBOURS, sources=[source]
        ),
        metadata=gateway.metadata(viewer),
        timeout=config.CALL_SECONDS,
    )
    return reply


def _behaviour_figures(profile: profiles_pb2.Profile) -> list[Figure]:
    """Category affinities over the longest window the profile has, interaction counts, and
    the kinds of the recent interactions."""
    window, affinities = _longest_affinities(profile.category_affinities)
    counts = profile.counts
    kinds = Counter(_event_text(i.event_type) for i in profile.recent_interactions)
    affinity = f"Category affinities ({window}): share of the user's events"
    interactions = "Interactions, all time"
    latest = f"The last {len(profile.recent_interactions)} interactions by kind"
    return [
        Figure(
            affinity,
            charts.bar_chart(
                affinity,
                [a.category for a in affinities],
                [a.score for a in affinities],
                fmt=charts.percent,
            ),
        ),
        Figure(
            interactions,
            charts.bar_chart(
                interactions,
                ["impressions", "clicks", "add to carts", "purchases"],
                [counts.impressions, counts.clicks, counts.add_to_carts, counts.purchases],
            ),
        ),
        Figure(latest, charts.stacked_bar(latest, kinds.most_common())),
    ]


def _longest_affinities(
    affinities: Iterable[profiles_pb2.CategoryAffinity],
) -> tuple[str, list[profiles_pb2.CategoryAffinity]]:
    """The name of the longest window present and its affinities, strongest first."""
    by_window: dict[int, list[profiles_pb2.CategoryAffinity]] = {}
    for affinity in affinities:
        by_window.setdefault(affinity.window, []).append(affinity)
    for window, name in WINDOWS.items():
        if window in by_window:
            return name, sorted(by_window[window], key=lambda a: -a.score)
    return WINDOWS[profiles_pb2.FEATURE_WINDOW_ALL_TIME], []


def _activity_figures(days: Sequence[catalog_pb2.DailyActivity]) -> list[Figure]:
    """Impressions on a chart of their own: they outnumber the rest by far, and would
    flatten the funnel's lines on a shared axis."""
    dates = [d.day.ToDatetime(tzinfo=UTC).date() for d in days]
    impressions = f"Impressions per day, last {len(days)} days"
    funnel = f"Clicks, add-to-carts and purchases per day, last {len(days)} days"
    return [
        Figure(
            impressions,
            charts.line_chart(
                impressions, dates, [charts.Series("impressions", [d.impressions for d in days])]
            ),
        ),
        Figure(
            funnel,
            charts.line_chart(
                funnel,
                dates,
                [
                    charts.Series("clicks", [d.clicks for d in days]),
                    charts.Series("add-to-carts", [d.add_to_carts for d in days]),
                    charts.Series("purchases", [d.purchases for d in days]),
                ],
            ),
        ),
    ]


def _version_view(version: models_pb2.ModelVersion) -> VersionView:
    groups = offline_groups(version.offline_metrics)
    caption = f"Offline metrics of version {version.version} on the held-out users"
    figure = Figure(caption, charts.grouped_bar_chart(caption, groups)) if groups else None
    return VersionView(version, _when(version.created_at), figure)


def _online_figure(versions: Iterable[models_pb2.VersionMetrics]) -> Figure:
    """Each rate on its own panel, one row per version with impressions (without any, a
    version has no rate to show)."""
    panels: dict[str, list[charts.Interval]] = {
        "Click-through rate": [],
        "Add-to-cart rate": [],
        "Purchase rate": [],
    }
    for v in versions:
        if not v.impressions:
            continue
        rates = (v.click_through_rate, v.add_to_cart_rate, v.purchase_rate)
        for rows, rate in zip(panels.values(), rates, strict=True):
            rows.append(
                charts.Interval(f"version {v.model_version}", rate.value, rate.low, rate.high)
            )
    caption = "Rates per impression of each model version, with 95% intervals"
    return Figure(caption, charts.interval_chart(caption, panels))


def _neighbours(
    candidates: Iterable[retrieval_pb2.Candidate], products: Products
) -> list[Neighbour]:
    return [Neighbour(_item(c.product_id, products), c.score) for c in candidates]


def _item(product_id: str, products: Products) -> Item:
    found = products.get(product_id)
    if found is None:
        return Item(product_id, product_id, "")
    return Item(product_id, found.title, CATEGORY_SEPARATOR.join(found.category_path))


def _event_text(event_type: int) -> str:
    return _enum_text(common_pb2.EventType.DESCRIPTOR, event_type)


def _enum_text(descriptor: EnumDescriptor, number: int) -> str:
    """A proto enum value for people ("add to cart" for EVENT_TYPE_ADD_TO_CART), "" for
    the unspecified zero; a number a newer server sent stays a number."""
    if number == 0:
        return ""
    value = descriptor.values_by_number.get(number)
    if value is None:
        return str(number)
    prefix = descriptor.values_by_number[0].name.removesuffix("UNSPECIFIED")
    return value.name.removeprefix(prefix).replace("_", " ").lower()


def _when(stamp: timestamp_pb2.Timestamp) -> str:
    """A time for people, in UTC; "" when unset."""
    if not stamp.seconds and not stamp.nanos:
        return ""
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M UTC")
