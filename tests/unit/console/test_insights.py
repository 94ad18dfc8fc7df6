"""The insight pages rendered from protobuf answers: charts where there is data, consent
respected, text escaped, every link relative."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from google.protobuf import timestamp_pb2
from starlette.requests import Request

from magpie.runtime.auth import Role
from magpie.v1 import catalog_pb2, common_pb2, models_pb2, profiles_pb2, retrieval_pb2
from services.console.auth import Viewer
from services.console.insights import (
    ROUTES,
    models_context,
    offline_groups,
    portrait_context,
    product_context,
)
from services.console.web import templates

HOSTILE = '<script>alert("x")</script>'
NOW = timestamp_pb2.Timestamp(seconds=1_764_000_000)


class Page(HTMLParser):
    """The tags of a rendered page that matter here."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tags: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.links += [v or "" for k, v in attrs if k in ("href", "action", "src")]


def show(name: str, context: dict[str, Any], base: str = "../../") -> tuple[str, Page]:
    viewer = Viewer("ana", Role.READER, "token")
    html = templates.get_template(name).render(
        {**context, "base": base, "viewer": viewer, "charts_css": True}
    )
    page = Page(html)
    assert all(link and not link.startswith(("/", "http")) for link in page.links), page.links
    return html, page


def product(pid: str, title: str) -> catalog_pb2.Product:
    return catalog_pb2.Product(
        product_id=pid,
        title=title,
        category_path=["Home", "Kitchen"],
        brand="Acme",
        price=common_pb2.Money(currency_code="EUR", units=12, nanos=500_000_000),
        stock=3,
        status=catalog_pb2.PRODUCT_STATUS_ACTIVE,
    )


PRODUCTS = {"p1": product("p1", HOSTILE), "p/2": product("p/2", "Pan")}


def profile(consent: profiles_pb2.Consent | None = None) -> profiles_pb2.Profile:
    return profiles_pb2.Profile(
        user_id="u1",
        known=True,
        attributes=profiles_pb2.UserAttributes(
            age_band=profiles_pb2.AGE_BAND_25_34, region=HOSTILE, consent=consent
        ),
        recent_interactions=[
            profiles_pb2.Interaction(
                product_id="p1", event_type=common_pb2.EVENT_TYPE_LIKE, occurred_at=NOW
            ),
            profiles_pb2.Interaction(
                product_id="p/2", event_type=common_pb2.EVENT_TYPE_IMPRESSION, occurred_at=NOW
            ),
        ],
        category_affinities=[
            profiles_pb2.CategoryAffinity(
                category="Home", window=profiles_pb2.FEATURE_WINDOW_7D, score=0.9
            ),
            profiles_pb2.CategoryAffinity(
                category="Books", window=profiles_pb2.FEATURE_WINDOW_ALL_TIME, score=0.3
            ),
            profiles_pb2.CategoryAffinity(
                category="Home", window=profiles_pb2.FEATURE_WINDOW_ALL_TIME, score=0.7
            ),
        ],
        purchased_product_ids=["p/2"],
        disliked_product_ids=["gone"],
        counts=profiles_pb2.InteractionCounts(impressions=10, clicks=2),
    )


def test_a_portrait_draws_behaviour_and_lists_history_without_impressions() -> None:
    context = portrait_context("u1", profile(), PRODUCTS)

    html, page = show("portrait.html", context)

    assert page.tags.count("svg") == 3
    assert "Category affinities (all time)" in html
    assert html.index(">Home<") < html.index(">Books<")  # strongest first
    assert [e.kind for e in context["recent"]] == ["like"]
    assert context["impressions"] == 1
    assert "../../products/p%2F2" in page.links  # purchase history, one path segment
    assert "gone" in html  # a disliked product the catalog no longer has keeps its id
    assert context["age_band"] == "25-34"
    assert HOSTILE not in html
    assert "&lt;script&gt;" in html


@pytest.mark.parametrize(
    ("consent", "notice"),
    [
        (profiles_pb2.Consent(personalization=True, analytics=False), "Analytics refused"),
        (profiles_pb2.Consent(personalization=False, analytics=True), "Personalisation refused"),
    ],
)
def test_a_refusal_is_shown_and_no_behaviour_is_drawn(
    consent: profiles_pb2.Consent, notice: str
) -> None:
    html, page = show("portrait.html", portrait_context("u1", profile(consent), PRODUCTS))

    assert "svg" not in page.tags
    assert notice in html
    assert "refused" in html


def test_unstated_consent_is_no_objection() -> None:
    html, _ = show("portrait.html", portrait_context("u1", profile(), PRODUCTS))

    assert "not stated (no objection)" in html
    assert "refused" not in html


def test_a_product_page_charts_activity_and_lists_both_neighbourhoods() -> None:
    days = [
        catalog_pb2.DailyActivity(
            day=timestamp_pb2.Timestamp(seconds=1_764_000_000 + i * 86_400), impressions=i, clicks=1
        )
        for i in range(30)
    ]
    by_text = retrieval_pb2.SimilarProductsResponse(
        candidates=[retrieval_pb2.Candidate(product_id="p/2", score=0.75)]
    )
    by_covisitation = retrieval_pb2.SimilarProductsResponse(
        candidates=[retrieval_pb2.Candidate(product_id="p9", score=1.5)]
    )

    html, page = show(
        "product.html",
        product_context(PRODUCTS["p1"], days, by_text, by_covisitation, PRODUCTS),
        base="../",
    )

    assert page.tags.count("svg") == 2
    assert "EUR 12.50" in html
    assert "../products/p%2F2" in page.links
    assert "../products/p9" in page.links  # not in the catalog any more: listed by id
    assert "score 0.750" in html
    assert "score 1.500" in html
    assert HOSTILE not in html


def verdict(accepted: bool) -> models_pb2.GateVerdict:
    return models_pb2.GateVerdict(
        accepted=accepted,
        reason="rejected: worse than the champion",
        checks=[
            models_pb2.GateCheck(name="baselines", passed=True, reason="beats popularity"),
            models_pb2.GateCheck(name="champion", passed=accepted, reason="NDCG@10 0.20 vs 0.21"),
        ],
    )


def test_the_models_page_shows_verdicts_metrics_promotions_and_online_rates() -> None:
    registry = models_pb2.ListModelVersionsResponse(
        model_name="magpie",
        versions=[
            models_pb2.ModelVersion(
                version=3,
                status="rejected",
                offline_metrics={"candidate.NDCG@10": 0.2, "champion.NDCG@10": 0.21},
                verdict=verdict(False),
            ),
            models_pb2.ModelVersion(version=2, status="candidate", aliases=["champion"]),
            models_pb2.ModelVersion(version=1, status="candidate", aliases=["previous"]),
        ],
        promotions=[
            models_pb2.Promotion(
                from_version=1, to_version=2, action="promote", trigger="manual", at=NOW
            )
        ],
    )
    rate = models_pb2.Rate(value=0.1, low=0.05, high=0.2)
    online = models_pb2.GetOnlineMetricsResponse(
        versions=[
            models_pb2.VersionMetrics(
                model_version="2",
                impressions=50,
                clicks=5,
                click_through_rate=rate,
                add_to_cart_rate=rate,
                purchase_rate=rate,
            ),
            models_pb2.VersionMetrics(model_version="1", clicks=2),
        ]
    )

    html, page = show("models.html", models_context(registry, online), base="./")

    assert page.tags.count("svg") == 2  # version 3's offline metrics, the online rates
    assert "NDCG@10 0.20 vs 0.21" in html
    assert "./models/compare" in page.links
    assert "version 2: 10% (95% CI 5% to 20%)" in html
    assert "version 1:" not in html  # no impressions, no rate
    assert "no impressions" in html


def test_without_a_previous_version_there_is_nothing_to_compare() -> None:
    registry = models_pb2.ListModelVersionsResponse(
        versions=[models_pb2.ModelVersion(version=1, aliases=["champion"])]
    )

    html, page = show(
        "models.html", models_context(registry, models_pb2.GetOnlineMetricsResponse()), "./"
    )

    assert "./models/compare" not in page.links
    assert "no previous version" in html
    assert "No data yet." in html


def test_offline_metrics_are_grouped_by_metric_in_model_order() -> None:
    metrics = {
        "covisitation.NDCG@10": 0.1,
        "candidate.NDCG@10": 0.3,
        "candidate.HR@10": 0.5,
        "extra.NDCG@10": 0.2,
        "candidate.users": 80.0,
        "ranker_p50_ms": 1.5,
    }

    groups = offline_groups(metrics)

    assert groups == {
        "NDCG@10": {"this version": 0.3, "co-visitation": 0.1, "extra": 0.2},
        "HR@10": {"this version": 0.5},
    }
    assert list(groups["NDCG@10"]) == ["this version", "co-visitation", "extra"]
    assert offline_groups({"ranker_p50_ms": 1.5}) == {}


@pytest.mark.parametrize(
    ("query", "location"),
    [(b"user_id=u%2F1", "../users/u%2F1/compare"), (b"user_id=+", "../models")],
)
async def test_the_compare_box_redirects_relative_to_the_users_side_by_side_page(
    query: bytes, location: str
) -> None:
    (route,) = [r for r in ROUTES if r.path == "/models/compare"]
    scope = {"type": "http", "method": "GET", "path": "/models/compare", "query_string": query}

    response = await route.endpoint(Request(scope))

    assert response.status_code == 303
    assert response.headers["location"] == location
