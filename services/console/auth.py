"""Who is looking: sign-in with a Magpie token, the session cookie, the checks on writes.

With a tokens file (``MAGPIE_AUTH_TOKENS_FILE``, the same callers file as the services)
a person signs in with their own token; the console keeps it in an HttpOnly,
SameSite=Strict cookie and forwards it on every downstream call, so the services enforce
their own authentication with that person's role. Without one the console is open and
every browser gets ``console_open_role`` (a loopback development platform).

The cookie has no explicit Path: the browser scopes it to the directory the console was
signed into, which is right behind a port-forward and behind an ingress path prefix.
A POST whose ``Origin`` names another host is refused (SameSite already keeps the cookie
off cross-site requests; this is the second lock).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from magpie.runtime.auth import Authenticator, Role
from services.console import config

__all__ = [
    "OPEN_PATHS",
    "SignIn",
    "Viewer",
    "clear_session",
    "is_open",
    "route_path",
    "same_origin",
    "start_session",
    "uses_https",
]

OPEN_PATHS = ("/login", "/healthz")
"""Paths served without a session (and everything under ``/static/``)."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """The person using the console: their caller name, role and token (None when the
    console runs open)."""

    name: str
    role: Role
    token: str | None

    @property
    def may_write(self) -> bool:
        """Whether feedback may be sent (Role.WRITER or above)."""
        return self.role >= Role.WRITER


def route_path(scope: Scope) -> str:
    """The request's path below the application root (without an ASGI ``root_path``)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def is_open(path: str) -> bool:
    """Whether `path` (below the application root) is served without a session."""
    return path in OPEN_PATHS or path.startswith("/static/")


def uses_https(request: HTTPConnection) -> bool:
    """Whether the browser reached the console over https (directly or, per
    ``X-Forwarded-Proto``, through a proxy that terminated TLS)."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def same_origin(headers: Mapping[str, str]) -> bool:
    """False when the request names an ``Origin`` whose host differs from the one it was
    sent to (``Host``, or ``X-Forwarded-Host`` behind a proxy); True without an Origin."""
    origin = headers.get("origin")
    if origin is None:
        return True
    origin_host = urlsplit(origin).netloc.lower()
    hosts = {headers.get("host", "").lower(), headers.get("x-forwarded-host", "").lower()}
    return bool(origin_host) and origin_host in hosts - {""}


def start_session(response: Response, token: str, *, secure: bool) -> None:
    """Keeps `token` in the session cookie of `response`."""
    response.set_cookie(
        config.COOKIE, token, path=None, secure=secure, httponly=True, samesite="strict"
    )


def clear_session(response: Response, *, secure: bool) -> None:
    response.set_cookie(
        config.COOKIE,
        "",
        max_age=0,
        expires=0,
        path=None,
        secure=secure,
        httponly=True,
        samesite="strict",
    )


class SignIn:
    """ASGI middleware: puts the request's `Viewer` in ``request.state.viewer`` (None on an
    open path without a session), answers a protected path without a valid session with
    ``refuse`` (the sign-in form, status 401) and a cross-origin POST with 403."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator | None,
        open_role: Role,
        refuse: Callable[[Request], Response],
    ) -> None:
        self._app = app
        self._authenticator = authenticator
        self._open_viewer = Viewer("anonymous", open_role, None)
        self._refuse = refuse

    def viewer(self, request: HTTPConnection) -> Viewer | None:
        """Who sent `request`: the holder of its cookie's token, or None."""
        if self._authenticator is None:
            return self._open_viewer
        token = request.cookies.get(config.COOKIE, "")
        caller = self._authenticator.identify_token(token) if token else None
        return None if caller is None else Viewer(caller.name, caller.role, token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request = Request(scope, receive)
        viewer = self.viewer(request)
        scope.setdefault("state", {})["viewer"] = viewer
        response: Response | None = None
        if request.method == "POST" and not same_origin(request.headers):
            response = PlainTextResponse("cross-origin request refused", status_code=403)
        elif viewer is None and not is_open(route_path(scope)):
            response = self._refuse(request)
        await (self._app if response is None else response)(scope, receive, send)
