"""Sign-in: who a request comes from, what needs a session, the cookie, cross-origin POSTs."""

from __future__ import annotations

from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Message, Receive, Scope, Send

from magpie.runtime.auth import Authenticator, Caller, Role
from services.console import config
from services.console.auth import (
    SignIn,
    Viewer,
    clear_session,
    is_open,
    same_origin,
    start_session,
    uses_https,
)
from tests.support import write_tokens


def _scope(
    path: str, *, method: str = "GET", headers: dict[str, str] | None = None, scheme: str = "http"
) -> Scope:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "scheme": scheme,
        "server": ("console.example", 80),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }


class _App:
    """The protected application: records the viewer SignIn let through."""

    def __init__(self) -> None:
        self.viewers: list[Viewer | None] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.viewers.append(scope["state"]["viewer"])
        await PlainTextResponse("page")(scope, receive, send)


async def _status(app: SignIn, scope: Scope) -> int:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status: int = sent[0]["status"]
    return status


def _refuse(request: Request) -> Response:
    return PlainTextResponse("sign in", status_code=401)


@pytest.fixture
def tokens(tmp_path: Path) -> tuple[Authenticator, dict[str, str]]:
    path = tmp_path / "callers.json"
    tokens = write_tokens(path, {"ann": "reader", "bob": "writer"})
    return Authenticator(str(path)), tokens


def test_a_token_identifies_its_caller_and_nothing_else_does(
    tokens: tuple[Authenticator, dict[str, str]],
) -> None:
    authenticator, issued = tokens

    assert authenticator.identify_token(issued["bob"]) == Caller("bob", Role.WRITER)
    assert authenticator.identify_token(issued["ann"] + "x") is None
    assert authenticator.identify_token("") is None


async def test_a_page_without_a_session_gets_the_sign_in_form(
    tokens: tuple[Authenticator, dict[str, str]],
) -> None:
    app = _App()
    gate = SignIn(app, authenticator=tokens[0], open_role=Role.READER, refuse=_refuse)

    assert await _status(gate, _scope("/users/u1")) == 401
    assert await _status(gate, _scope("/", headers={"cookie": f"{config.COOKIE}=forged"})) == 401
    assert app.viewers == []


async def test_open_paths_need_no_session(tokens: tuple[Authenticator, dict[str, str]]) -> None:
    app = _App()
    gate = SignIn(app, authenticator=tokens[0], open_role=Role.READER, refuse=_refuse)

    for path in ("/login", "/healthz", "/static/console.css"):
        assert await _status(gate, _scope(path)) == 200
    assert app.viewers == [None, None, None]
    assert not is_open("/users/u1/portrait")
    assert not is_open("/static")  # only what is below it


async def test_a_valid_cookie_makes_the_viewer(
    tokens: tuple[Authenticator, dict[str, str]],
) -> None:
    authenticator, issued = tokens
    app = _App()
    gate = SignIn(app, authenticator=authenticator, open_role=Role.WRITER, refuse=_refuse)
    cookie = {"cookie": f"{config.COOKIE}={issued['ann']}"}

    assert await _status(gate, _scope("/users/u1", headers=cookie)) == 200
    assert app.viewers == [Viewer("ann", Role.READER, issued["ann"])]
    assert not Viewer("ann", Role.READER, issued["ann"]).may_write


async def test_without_a_tokens_file_everyone_gets_the_open_role() -> None:
    app = _App()
    gate = SignIn(app, authenticator=None, open_role=Role.WRITER, refuse=_refuse)

    assert await _status(gate, _scope("/users/u1")) == 200
    assert app.viewers == [Viewer("anonymous", Role.WRITER, None)]
    assert Viewer("anonymous", Role.WRITER, None).may_write


async def test_a_cross_origin_post_is_refused_even_when_signed_in() -> None:
    app = _App()
    gate = SignIn(app, authenticator=None, open_role=Role.WRITER, refuse=_refuse)
    post = {"host": "console.example:8088"}

    foreign = _scope(
        "/users/u1/feedback", method="POST", headers={**post, "origin": "https://evil.example"}
    )
    own = _scope(
        "/users/u1/feedback",
        method="POST",
        headers={**post, "origin": "http://console.example:8088"},
    )
    assert await _status(gate, foreign) == 403
    assert await _status(gate, own) == 200
    assert len(app.viewers) == 1


@pytest.mark.parametrize(
    ("headers", "same"),
    [
        ({"host": "a:1"}, True),  # no Origin: not a browser's cross-site form
        ({"host": "a:1", "origin": "http://a:1"}, True),
        ({"host": "a:1", "origin": "http://a:2"}, False),
        ({"host": "a:1", "origin": "null"}, False),
        (
            {
                "host": "pod:8088",
                "x-forwarded-host": "magpie.example",
                "origin": "https://magpie.example",
            },
            True,
        ),
        ({"host": "", "origin": "http://"}, False),
    ],
)
def test_same_origin(headers: dict[str, str], same: bool) -> None:
    assert same_origin(headers) is same


def test_https_is_seen_directly_or_through_a_proxy() -> None:
    assert uses_https(Request(_scope("/", scheme="https")))
    assert uses_https(Request(_scope("/", headers={"x-forwarded-proto": "https, http"})))
    assert not uses_https(Request(_scope("/")))


@pytest.mark.parametrize("secure", [False, True])
def test_the_session_cookie_is_http_only_strict_and_scoped_by_the_browser(secure: bool) -> None:
    response = Response()
    start_session(response, "tok", secure=secure)
    cookie = SimpleCookie(response.headers["set-cookie"])[config.COOKIE]
    header = response.headers["set-cookie"].lower()

    assert cookie.value == "tok"
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "strict"
    assert bool(cookie["secure"]) is secure
    assert "path=" not in header  # the directory the console was signed into


def test_signing_out_expires_the_same_cookie() -> None:
    response = Response()
    clear_session(response, secure=False)
    cookie = SimpleCookie(response.headers["set-cookie"])[config.COOKIE]

    assert cookie.value == ""
    assert cookie["max-age"] == "0"
    assert "path=" not in response.headers["set-cookie"].lower()
