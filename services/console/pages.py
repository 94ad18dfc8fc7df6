"""The console's own pages: sign-in, the user search, a user's recommendations with
feedback, and the champion beside the previous version.

Every page reads through the gateway with the viewer's token; a page that sends feedback
answers with a relative redirect (POST, then GET) to the fresh recommendations.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

import grpc
from opentelemetry import trace
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from magpie.runtime.auth import Authenticator
from magpie.runtime.telemetry import ATTR, current_trace_id, hashed_user, tracer
from magpie.v1 import (
    catalog_pb2,
    common_pb2,
    feedback_pb2,
    models_pb2,
    profiles_pb2,
    ranking_pb2,
)
from services.console import config
from services.console.auth import (
    Viewer,
    clear_session,
    route_path,
    start_session,
    uses_https,
)
from services.console.forms import (
    EVENT_TYPES,
    FormError,
    feedback_event,
    recommend_request,
    recommendations_query,
    safe_next,
)
from services.console.gateway import Gateway
from services.console.web import (
    base_of,
    failure_message,
    gateway_of,
    grpc_failure,
    money_text,
    render,
    segment,
    viewer_of,
)

__all__ = ["READ_ONLY", "ROUTES", "Answer", "Card", "sign_in_required"]

SOURCES: Mapping[common_pb2.CandidateSource.ValueType, str] = {
    common_pb2.CANDIDATE_SOURCE_ANN: "ANN",
    common_pb2.CANDIDATE_SOURCE_COVISITATION: "co-visitation",
    common_pb2.CANDIDATE_SOURCE_POPULAR: "popular",
    common_pb2.CANDIDATE_SOURCE_CONTENT: "content",
    common_pb2.CANDIDATE_SOURCE_CALLER: "caller",
}
DEGRADATIONS: Mapping[ranking_pb2.Degradation.ValueType, str] = {
    ranking_pb2.DEGRADATION_RANKER_UNAVAILABLE: "the ranker was unavailable: items are in "
    "retrieval order",
    ranking_pb2.DEGRADATION_RETRIEVAL_UNAVAILABLE: "retrieval was unavailable: items come "
    "from popularity",
    ranking_pb2.DEGRADATION_PROFILE_UNAVAILABLE: "the profile was unavailable: the user is "
    "treated as new",
    ranking_pb2.DEGRADATION_FEATURES_UNAVAILABLE: "product features were unavailable: "
    "business rules used cached data",
}
READ_ONLY = "read-only: sign in with a writer token to send feedback"
_tracer = tracer("magpie.console")


@dataclass(frozen=True, slots=True)
class Card:
    """One recommended product as a page shows it."""

    position: int
    product_id: str
    title: str
    category: str
    brand: str
    price: str
    stock: int
    score: float
    source: str
    reason: str
    anchor_id: str
    """The product the reason points at ("Because you viewed ..."), or ""."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One Recommend answer as a page shows it."""

    recommendation_id: str
    model_version: str
    cards: list[Card]
    degradations: list[str]


def _card(item: ranking_pb2.RecommendedItem, product: catalog_pb2.Product | None) -> Card:
    if product is None:  # gone from the catalog since it was ranked
        product = catalog_pb2.Product(product_id=item.product_id, title=item.product_id)
    return Card(
        position=item.position,
        product_id=item.product_id,
        title=product.title,
        category=" > ".join(product.category_path),
        brand=product.brand,
        price=money_text(product.price) if product.HasField("price") else "",
        stock=product.stock,
        score=item.score,
        source=SOURCES.get(item.source, "unknown"),
        reason=item.reason.text,
        anchor_id=item.reason.anchor_product_id,
    )


async def _answer(
    gateway: Gateway, viewer: Viewer, request: ranking_pb2.RecommendRequest
) -> Answer:
    reply = await gateway.ranking.Recommend(
        request, metadata=gateway.metadata(viewer), timeout=config.CALL_SECONDS
    )
    products = await gateway.products(viewer, [item.product_id for item in reply.items])
    return Answer(
        recommendation_id=reply.recommendation_id,
        model_version=reply.model_version,
        cards=[_card(item, products.get(item.product_id)) for item in reply.items],
        degradations=[
            DEGRADATIONS.get(d, ranking_pb2.Degradation.Name(d)) for d in reply.degradations
        ],
    )


async def _versions(
    gateway: Gateway, viewer: Viewer
) -> models_pb2.ListModelVersionsResponse | None:
    """The registry's versions, or None when the model service cannot say (the page then
    offers no version choice)."""
    try:
        reply: models_pb2.ListModelVersionsResponse = await gateway.models.ListModelVersions(
            models_pb2.ListModelVersionsRequest(limit=config.MODEL_VERSIONS),
            metadata=gateway.metadata(viewer),
            timeout=config.CALL_SECONDS,
        )
    except grpc.aio.AioRpcError:
        return None
    return reply


def _aliased(versions: models_pb2.ListModelVersionsResponse | None) -> dict[str, int]:
    """Alias ("champion", "previous", "staged") -> the version it names."""
    if versions is None:
        return {}
    return {alias: v.version for v in versions.versions for alias in v.aliases}


def _recorded_trace_id() -> str:
    """The trace id of the current span when it is recorded (a trace one can open)."""
    return current_trace_id() if trace.get_current_span().is_recording() else ""


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded body as field -> value (the last one of a repeated field)."""
    body = (await request.body()).decode(errors="replace")
    return {name: values[-1] for name, values in parse_qs(body, keep_blank_values=True).items()}


def _form_problem(request: Request, error: FormError) -> Response:
    return render(
        request,
        "error.html",
        {"title": "Please check the form", "details": [str(error)]},
        status=400,
    )


def sign_in_required(request: Request) -> Response:
    """The sign-in form, status 401: the answer to any page asked for without a session
    (`auth.SignIn`); signing in returns to the page asked for."""
    target = route_path(request.scope).lstrip("/")
    if request.url.query:
        target += "?" + request.url.query
    return render(
        request,
        "login.html",
        {"next": safe_next(target) if request.method == "GET" else "", "problem": ""},
        status=401,
    )


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def login(request: Request) -> Response:
    authenticator = request.app.state.authenticator
    if authenticator is None:  # an open console: nobody signs in
        return RedirectResponse(base_of(request), status_code=303)
    if request.method == "GET":
        return render(
            request,
            "login.html",
            {"next": safe_next(request.query_params.get("next", "")), "problem": ""},
        )
    assert isinstance(authenticator, Authenticator)
    form = await _form(request)
    token = form.get("token", "").strip()
    if not token or authenticator.identify_token(token) is None:
        problem = "That token is not known here."
        return render(
            request,
            "login.html",
            {"next": safe_next(form.get("next", "")), "problem": problem},
            status=401,
        )
    response = RedirectResponse(base_of(request) + safe_next(form.get("next", "")), status_code=303)
    start_session(response, token, secure=uses_https(request))
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse(base_of(request) + "login", status_code=303)
    clear_session(response, secure=uses_https(request))
    return response


async def users(request: Request) -> Response:
    """The user search: users whose id starts with ``q``, with their counts."""
    viewer, gateway = viewer_of(request), gateway_of(request)
    prefix = request.query_params.get("q", "").strip()[: config.MAX_TEXT]
    context: dict[str, object] = {"q": prefix, "profiles": [], "next_page": "", "problem": ""}
    try:
        reply = await gateway.profiles.ListProfiles(
            profiles_pb2.ListProfilesRequest(
                page_size=config.USERS_PAGE,
                page_token=request.query_params.get("page", ""),
                user_id_prefix=prefix,
            ),
            metadata=gateway.metadata(viewer),
            timeout=config.CALL_SECONDS,
        )
        context.update(profiles=list(reply.profiles), next_page=reply.next_page_token)
    except grpc.aio.AioRpcError as error:  # the page still opens a user by id
        context["problem"] = failure_message(error)
    return render(request, "users.html", context)


async def go_to_user(request: Request) -> Response:
    """The "go to user id" box: a redirect to that user's recommendations."""
    user_id = request.query_params.get("user_id", "").strip()
    target = f"users/{segment(user_id)}" if user_id else ""
    return RedirectResponse(base_of(request) + target, status_code=303)


async def recommendations(request: Request) -> Response:
    """A user's recommendations as the query string asks for them, with feedback controls
    for a viewer who may write."""
    viewer, gateway = viewer_of(request), gateway_of(request)
    user_id = request.path_params["user_id"]
    try:
        ask = recommend_request(user_id, request.query_params)
    except FormError as error:
        return _form_problem(request, error)
    with _tracer.start_as_current_span("console recommendations") as span:
        span.set_attribute(ATTR.USER, hashed_user(user_id))
        trace_id = _recorded_trace_id()
        try:
            answer, versions = await asyncio.gather(
                _answer(gateway, viewer, ask), _versions(gateway, viewer)
            )
        except grpc.aio.AioRpcError as error:
            return grpc_failure(request, error)
        span.set_attribute(ATTR.RECOMMENDATION_ID, answer.recommendation_id)
        span.set_attribute(ATTR.MODEL_VERSION, answer.model_version)
    sent = request.query_params.get("sent", "")
    sent = sent if sent in EVENT_TYPES else ""
    return render(
        request,
        "recommendations.html",
        {
            "user_id": user_id,
            "ask": ask,
            "form": dict(request.query_params),
            "answer": answer,
            "aliases": _aliased(versions),
            "trace_id": trace_id,
            "query": recommendations_query(request.url.query),
            "sent": sent,
            "sent_product": request.query_params.get("sent_product", "") if sent else "",
            "read_only": READ_ONLY,
        },
    )


async def feedback(request: Request) -> Response:
    """One feedback event from a card, then back to the fresh recommendations."""
    viewer, gateway = viewer_of(request), gateway_of(request)
    if not viewer.may_write:
        return render(
            request, "error.html", {"title": "Read-only", "details": [READ_ONLY]}, status=403
        )
    user_id = request.path_params["user_id"]
    form = await _form(request)
    try:
        event = feedback_event(user_id, form, uuid.uuid4().hex)
    except FormError as error:
        return _form_problem(request, error)
    try:
        reply = await gateway.feedback.RecordEvents(
            feedback_pb2.RecordEventsRequest(events=[event]),
            metadata=gateway.metadata(viewer),
            timeout=config.CALL_SECONDS,
        )
    except grpc.aio.AioRpcError as error:
        return grpc_failure(request, error)
    result = reply.results[0]
    if result.outcome not in (
        feedback_pb2.EVENT_OUTCOME_ACCEPTED,
        feedback_pb2.EVENT_OUTCOME_DUPLICATE,
    ):
        return render(
            request,
            "error.html",
            {"title": "The feedback was not stored", "details": [result.reason]},
            status=400,
        )
    query = recommendations_query(
        form.get("query", ""), sent=form["event_type"], sent_product=event.product_id
    )
    return RedirectResponse(f"{base_of(request)}users/{segment(user_id)}?{query}", status_code=303)


async def compare(request: Request) -> Response:
    """The same request answered by the champion and by the previous version."""
    viewer, gateway = viewer_of(request), gateway_of(request)
    user_id = request.path_params["user_id"]
    try:
        ask = recommend_request(user_id, request.query_params)
    except FormError as error:
        return _form_problem(request, error)
    with _tracer.start_as_current_span("console compare") as span:
        span.set_attribute(ATTR.USER, hashed_user(user_id))
        trace_id = _recorded_trace_id()
        try:
            versions = await gateway.models.ListModelVersions(
                models_pb2.ListModelVersionsRequest(limit=config.MODEL_VERSIONS),
                metadata=gateway.metadata(viewer),
                timeout=config.CALL_SECONDS,
            )
            aliases = _aliased(versions)
            columns: list[tuple[str, Answer]] = []
            if "previous" in aliases:
                asks = [_with_version(ask, ""), _with_version(ask, str(aliases["previous"]))]
                answers = await asyncio.gather(*(_answer(gateway, viewer, a) for a in asks))
                columns = list(zip(("champion", "previous"), answers, strict=True))
        except grpc.aio.AioRpcError as error:
            return grpc_failure(request, error)
    return render(
        request,
        "compare.html",
        {
            "user_id": user_id,
            "aliases": aliases,
            "columns": columns,
            "trace_id": trace_id,
            "query": recommendations_query(request.url.query),
        },
    )


def _with_version(ask: ranking_pb2.RecommendRequest, version: str) -> ranking_pb2.RecommendRequest:
    copy = ranking_pb2.RecommendRequest()
    copy.CopyFrom(ask)
    copy.model_version = version
    return copy


ROUTES = [
    Route("/healthz", healthz),
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/", users),
    Route("/users", go_to_user),
    Route("/users/{user_id}", recommendations),
    Route("/users/{user_id}/feedback", feedback, methods=["POST"]),
    Route("/users/{user_id}/compare", compare),
]
