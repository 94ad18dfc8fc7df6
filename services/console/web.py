"""Rendering pages: templates, relative links, who is looking, errors from the services.

Every link, form action and redirect the console writes is relative (``{{ base }}users/..``,
never ``/users/..``), so the same pages work at the root of a port-forward and below an
ingress path prefix: ``base`` leads from the requested page back to the console's root.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from magpie.runtime.settings import Settings
from magpie.runtime.units import NANOS_PER_UNIT
from magpie.v1 import common_pb2
from services.console.auth import Viewer, route_path
from services.console.gateway import Gateway

__all__ = [
    "HERE",
    "base_of",
    "failure_message",
    "gateway_of",
    "grpc_failure",
    "money_text",
    "relative_base",
    "render",
    "segment",
    "settings_of",
    "templates",
    "trace_link",
    "viewer_of",
]

logger = logging.getLogger(__name__)


def relative_base(path: str) -> str:
    """The relative URL from the page at `path` (below the console's root, starting with
    "/") back to the root: "./" at "/", "../" at "/users/u1", "../../" at
    "/users/u1/portrait". A browser resolves a relative URL against the page's last "/",
    so the depth is the number of slashes after the first."""
    depth = path.count("/") - 1
    return "../" * depth if depth > 0 else "./"


def base_of(request: Request) -> str:
    return relative_base(route_path(request.scope))


def segment(value: object) -> str:
    """`value` quoted as one path segment (a "/" in an id must not open a new level)."""
    return quote(str(value), safe="")


def money_text(money: common_pb2.Money) -> str:
    """A price for people: "EUR 12.50"."""
    nanos = money.units * NANOS_PER_UNIT + money.nanos
    return f"{money.currency_code} {nanos / NANOS_PER_UNIT:,.2f}".strip()


def trace_link(settings: Settings, trace_id: str) -> str:
    """The trace viewer's address of `trace_id` (``console_trace_url``), or "" without one."""
    if not trace_id or not settings.console_trace_url:
        return ""
    return settings.console_trace_url.replace("{trace_id}", trace_id)


HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["money"] = money_text
templates.env.filters["segment"] = segment
templates.env.globals["charts_css"] = (HERE / "static" / "charts.css").is_file()


def settings_of(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


def viewer_of(request: Request) -> Viewer:
    """The signed-in viewer (every page but the open ones has one: auth.SignIn)."""
    viewer = getattr(request.state, "viewer", None)
    if not isinstance(viewer, Viewer):
        raise RuntimeError(f"no viewer on {route_path(request.scope)}: not behind SignIn?")
    return viewer


def gateway_of(request: Request) -> Gateway:
    gateway = request.app.state.gateway
    assert isinstance(gateway, Gateway)
    return gateway


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    """Template `name` with `context` plus ``base`` (relative root), ``viewer`` (None on an
    open page without a session) and ``trace_link(trace_id)``."""
    settings = settings_of(request)
    return templates.TemplateResponse(
        request,
        name,
        {
            **context,
            "base": base_of(request),
            "viewer": getattr(request.state, "viewer", None),
            "trace_link": lambda trace_id: trace_link(settings, trace_id),
        },
        status_code=status,
    )


_FAILURES: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "The request was refused"),
    grpc.StatusCode.NOT_FOUND: (404, "Not found"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "The services did not accept your token"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "Your role may not do this"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "A service took too long to answer; try again"),
    grpc.StatusCode.UNAVAILABLE: (503, "A service is unavailable; try again shortly"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (503, "The services are busy; try again shortly"),
}
_SHOWN_DETAILS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
"""Codes whose message is about the request (the offending fields): shown as is. Other
messages may describe the service's insides and are not shown."""


def failure_message(error: grpc.aio.AioRpcError) -> str:
    """What a person is told about a failed gRPC call."""
    title, details = _failure(error)[1:]
    return "; ".join([title, *details])


def _failure(error: grpc.aio.AioRpcError) -> tuple[int, str, list[str]]:
    code = error.code()
    status, title = _FAILURES.get(code, (502, f"A service answered with an error ({code.name})"))
    detail = (error.details() or "") if code in _SHOWN_DETAILS else ""
    return status, title, detail.split("; ") if detail else []


def grpc_failure(request: Request, error: grpc.aio.AioRpcError) -> HTMLResponse:
    """The error page for a failed gRPC call."""
    status, title, details = _failure(error)
    page = route_path(request.scope).split("/")[1]  # "users", never the id after it
    logger.warning("%s page: a call failed with %s", page or "users", error.code().name)
    return render(request, "error.html", {"title": title, "details": details}, status=status)
