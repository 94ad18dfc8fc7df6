"""The local platform's web console: its settings and port, the HTTP wait, and that a
started console is one of the platform's processes (`magpie status`, `magpie down`)."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from magpie.platform.local import (
    CONSOLE,
    SERVICES,
    LocalPlatform,
    PlatformLayout,
    console_settings,
    free_port,
    isolated_layout,
    wait_http,
)
from magpie.runtime.settings import CONSOLE_PORT, load_settings


def test_the_console_listens_on_the_layouts_port_and_lets_every_browser_write(
    tmp_path: Path,
) -> None:
    """The local platform runs without authentication: no sign-in, feedback allowed."""
    layout = PlatformLayout(state_dir=tmp_path, console_port=18123)
    values = console_settings(layout)
    settings = load_settings({k.removeprefix("MAGPIE_").lower(): v for k, v in values.items()})
    assert settings.console_port == 18123
    assert settings.console_open_role == "writer"
    assert layout.console_url == "http://127.0.0.1:18123/"
    assert PlatformLayout(state_dir=tmp_path).console_port == CONSOLE_PORT


def test_an_isolated_platform_has_a_console_port_of_its_own(tmp_path: Path) -> None:
    layout = isolated_layout(tmp_path)
    assert layout.console_port != CONSOLE_PORT
    taken = {*layout.ports.values(), *layout.metrics_ports.values()}
    assert layout.console_port not in taken


class _Starting(BaseHTTPRequestHandler):
    """Answers 503 to the first two requests, then 200: a server still starting up."""

    seen = 0

    def do_GET(self) -> None:
        type(self).seen += 1
        status = HTTPStatus.OK if self.seen > 2 else HTTPStatus.SERVICE_UNAVAILABLE
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def starting_server() -> Iterator[str]:
    _Starting.seen = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Starting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_wait_http_waits_for_a_200(starting_server: str) -> None:
    assert wait_http(starting_server, timeout=10)
    assert _Starting.seen == 3


def test_wait_http_gives_up_when_nothing_listens() -> None:
    assert not wait_http(f"http://127.0.0.1:{free_port()}/healthz", timeout=0.5)


@pytest.mark.slow
def test_a_started_console_is_a_platform_process_until_down(tmp_path: Path) -> None:
    """The real `python -m services.console`: /healthz answers before any service runs (it
    follows none), `running()` lists it, `down()` stops it."""
    layout = PlatformLayout(
        state_dir=tmp_path,
        ports={name: free_port() for name in SERVICES},
        console_port=free_port(),
    )
    platform = LocalPlatform(
        layout, database_url="postgresql://postgres@127.0.0.1:1/unused", redis_url=""
    )
    try:
        url = platform.start_console(timeout=60)
        assert url == layout.console_url
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url + "healthz", timeout=5) as reply:
            assert reply.read() == b"ok"
        pid = platform.running()[CONSOLE]
        assert platform.start_console() == url
        assert platform.running()[CONSOLE] == pid  # already running: left as it is
    finally:
        stopped = platform.down()
    assert stopped == [CONSOLE]
    assert CONSOLE not in platform.running()
    assert not wait_http(url + "healthz", timeout=0.5)
