"""The web console in a real browser (Debian's chromium driven by playwright) against the
real platform: sign-in, recommendations with reasons and sources, feedback that changes
the next answer, the portrait, product, models and compare pages, no console error on any
page, nothing wider than a phone's screen. Screenshots of every page are kept as test
artifacts in ``$TEST_ARTIFACTS/console/`` (default ``.test-artifacts/console/``).

``TEST_CONSOLE_README=1`` also writes the README's screenshot, ``docs/console.png``.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from playwright.sync_api import Browser, ConsoleMessage, ViewportSize, sync_playwright

from magpie.platform.local import free_port
from magpie.platform.traces import trace_of
from magpie.runtime.settings import ENV_PREFIX
from magpie.v1 import (
    common_pb2,
    feedback_pb2,
    feedback_pb2_grpc,
    profiles_pb2,
    profiles_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
)
from tests.integration.e2e.conftest import Platform
from tests.support import REPO, stop_process, write_tokens

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", REPO / ".test-artifacts")) / "console"
README_SCREENSHOT = REPO / "docs" / "console.png"
DESKTOP = ViewportSize(width=1280, height=900)
PHONE = ViewportSize(width=390, height=844)
K = 6
SOURCES = {"ANN", "co-visitation", "popular", "content", "caller"}
FOLD_SECONDS = 20.0
"""Longest wait for feedback to reach the next answer (the consumer folds it into the
profile, then the cached profile is dropped)."""


@dataclass
class Console:
    url: str
    """Ends with "/"."""
    tokens: dict[str, str]
    """"reader" and "writer" -> their token."""
    log: Path


@pytest.fixture(scope="module")
def console(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """``python -m services.console`` for the platform, signing people in against a tokens
    file of one reader and one writer, tracing into the platform's receiver."""
    directory = tmp_path_factory.mktemp("console")
    tokens = write_tokens(directory / "callers.json", {"reader": "reader", "writer": "writer"})
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)},
        **platform.local.service_settings(),
        **platform.traces.targets.environment(),
        "MAGPIE_CONSOLE_PORT": str(port),
        "MAGPIE_AUTH_TOKENS_FILE": str(directory / "callers.json"),
    }
    log = directory / "console.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.console"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_healthy(url, process, log)
        yield Console(url, tokens, log)
    finally:
        stop_process(process)
    assert process.returncode == 0, log.read_text(errors="replace")  # SIGTERM: a clean stop


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    give_up = time.monotonic() + 30
    while time.monotonic() < give_up:
        assert process.poll() is None, f"the console exited:\n{log.read_text(errors='replace')}"
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError),
            urllib.request.urlopen(url + "healthz", timeout=1) as reply,
        ):
            if reply.status == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"the console never answered /healthz:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"NO BROWSER: {CHROMIUM} is missing, so the console's browser tests did not run. "
            "Install it with `sudo tools/install-test-packages` (Debian's chromium)."
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


class Browsing:
    """One browser context (its own cookies) and page; every console message of type
    error and every uncaught page error is a failure of the test."""

    def __init__(self, browser: Browser, console: Console, viewport: ViewportSize) -> None:
        self.console = console
        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.expected_status_errors: set[int] = set()
        self.page.on("console", self._console_message)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _console_message(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        expected = any(
            f"status of {status}" in message.text for status in self.expected_status_errors
        )
        if not expected:  # a refused page (401, 403) is reported by chromium as a load error
            self.problems.append(f"{self.page.url}: console error: {message.text}")

    def open(self, path: str, status: int = 200) -> None:
        response = self.page.goto(self.console.url + path)
        assert response is not None
        assert response.status == status, f"{path}: {response.status}\n{self.page.content()}"

    def open_whole_answer(self, path: str, tries: int = 5) -> None:
        """Opens a recommendations page, again while its answer is degraded (a dependency
        hop that timed out on these 2 busy cores): what follows checks a whole answer."""
        for _ in range(tries):
            self.open(path)
            if self.page.locator(".banner").count() == 0:
                return
        raise AssertionError(f"{path}: degraded {tries} times:\n{self.page.content()}")

    def sign_in(self, who: str) -> None:
        self.open("login")
        self.page.fill("#token", self.console.tokens[who])
        with self.page.expect_navigation():
            self.page.click("main form button[type=submit]")
        assert self.page.locator(".who").inner_text().startswith(who)

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def fits(self) -> None:
        """Nothing on the page is wider than the window (no sideways scrolling)."""
        width, window = self.page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert width <= window, f"{self.page.url}: {width}px wide in a {window}px window"

    def cards(self) -> list[str]:
        return [
            str(card.get_attribute("data-product"))
            for card in self.page.locator("article.card").all()
        ]


@contextlib.contextmanager
def browsing(
    browser: Browser, console: Console, viewport: ViewportSize = DESKTOP
) -> Iterator[Browsing]:
    session = Browsing(browser, console, viewport)
    try:
        yield session
    finally:
        session.context.close()
    assert session.problems == []


def _user_with_history(platform: Platform) -> str:
    """A user with a long history whom no other end-to-end test asks for or sends events
    for (the held-out users are measured; the newest user must stay uncached)."""
    counts = Counter(i.user_id for i in platform.world.loaded.interactions)
    spare = sorted(
        u
        for u, n in counts.items()
        if n >= 20
        and u not in platform.world.held_out
        and u != platform.world.loaded.users[-1].user_id
    )
    return spare[len(spare) // 2]


def _history(platform: Platform, user_id: str) -> set[str]:
    with grpc.insecure_channel(platform.settings.profiles_addr) as channel:
        reply = profiles_pb2_grpc.ProfileServiceStub(channel).GetProfile(
            profiles_pb2.GetProfileRequest(user_id=user_id, history_limit=200), timeout=5
        )
    return {i.product_id for i in reply.profile.recent_interactions}


def test_an_unauthenticated_browser_gets_the_sign_in_form(
    platform: Platform, console: Console, browser: Browser
) -> None:
    with browsing(browser, console) as web:
        web.expected_status_errors = {401}
        user_id = _user_with_history(platform)
        web.open(f"users/{user_id}?k={K}", status=401)
        assert web.page.locator("#token").is_visible()
        assert web.page.locator("article.card").count() == 0
        web.shot("sign-in")

        web.page.fill("#token", "not-a-token")
        with web.page.expect_navigation():
            web.page.click("main form button[type=submit]")
        assert "not known" in web.page.locator(".problem").inner_text()

        web.page.fill("#token", console.tokens["reader"])
        with web.page.expect_navigation():
            web.page.click("main form button[type=submit]")
        assert web.page.url == f"{console.url}users/{user_id}?k={K}"  # back where it began
        assert len(web.cards()) == K


def test_a_reader_sees_reasons_and_sources_and_cannot_send_feedback(
    platform: Platform, console: Console, browser: Browser
) -> None:
    user_id = _user_with_history(platform)
    with browsing(browser, console) as web:
        web.expected_status_errors = {403}
        web.sign_in("reader")
        web.open_whole_answer(f"users/{user_id}?k={K}")

        cards = web.page.locator("article.card")
        assert cards.count() == K
        for card in cards.all():
            assert card.locator(".reason").inner_text().strip()
            assert card.locator(".source").inner_text().strip() in SOURCES
            assert card.locator(".title").inner_text().strip()
        assert any("Because you" in text for text in web.page.locator(".reason").all_inner_texts())
        assert web.page.locator("form.feedback, form.comment").count() == 0
        assert "read-only" in web.page.locator(".note").inner_text()
        web.shot("recommendations-reader")

        trace = re.search(r"magpie trace ([0-9a-f]{32})", web.page.locator(".meta").inner_text())
        assert trace is not None, "no trace shown (the console traces every page it renders)"
        _assert_traced(platform, trace.group(1))

        forged = web.page.request.post(
            f"{console.url}users/{user_id}/feedback",
            form={"product_id": web.cards()[0], "event_type": "dislike", "position": "1"},
        )
        assert forged.status == 403
        assert "read-only" in forged.text()


def _assert_traced(platform: Platform, trace_id: str) -> None:
    """The page's trace: the console's span with the services' spans under it."""
    give_up = time.monotonic() + 15
    while True:
        services = {span.service for span in trace_of(platform.traces.spans, trace_id)}
        if {"console", "ranking", "catalog"} <= services or time.monotonic() > give_up:
            break
        time.sleep(0.2)
    assert {"console", "ranking", "catalog"} <= services, services


def test_a_writer_likes_and_dislikes_and_the_next_answer_changes(
    platform: Platform, console: Console, browser: Browser
) -> None:
    user_id = _user_with_history(platform)
    history = _history(platform, user_id)
    with browsing(browser, console) as web:
        web.expected_status_errors = {403}
        web.sign_in("writer")
        web.open_whole_answer(f"users/{user_id}?k={K}")
        if os.environ.get("TEST_CONSOLE_README") == "1":
            web.page.screenshot(path=str(README_SCREENSHOT))
        first = web.cards()
        liked = next(p for p in first if p not in history)  # new to the history: visible there
        disliked = next(p for p in first if p != liked)

        refused = web.page.request.post(
            f"{console.url}users/{user_id}/feedback",
            form={"product_id": disliked, "event_type": "dislike", "position": "1"},
            headers={"Origin": "https://evil.example"},
        )
        assert refused.status == 403  # another site's form, even with the writer's cookie

        for product_id, kind in ((liked, "like"), (disliked, "dislike")):
            with web.page.expect_navigation():
                web.page.click(f'article[data-product="{product_id}"] button[value="{kind}"]')
            assert web.page.url.startswith(f"{console.url}users/{user_id}?k={K}&sent={kind}")
            assert kind in web.page.locator(".notice").inner_text()
        web.shot("recommendations-after-feedback")

        give_up = time.monotonic() + FOLD_SECONDS
        while disliked in web.cards():
            assert time.monotonic() < give_up, f"{disliked} still recommended: {web.cards()}"
            time.sleep(0.5)
            web.page.reload()
        assert len(web.cards()) == K

        comment = web.page.locator("article.card form.comment").first
        comment.locator("input[name=comment]").fill("Too pricey for a gift <b>really</b>")
        with web.page.expect_navigation():
            comment.locator("button").click()
        assert "comment" in web.page.locator(".notice").inner_text()

        web.open(f"users/{user_id}/portrait")
        recent = web.page.locator(f'a[href$="products/{liked}"]')
        assert recent.count() >= 1, f"{liked} not among the portrait's recent items"
        web.shot("portrait-after-feedback")


def _shown_and_clicked(platform: Platform, user_id: str) -> str:
    """What a storefront reports after showing a recommendation: an impression per item and
    a click on the first, attributed to the answer. Returns the answer's model version."""
    with grpc.insecure_channel(platform.settings.ranking_addr) as channel:
        answer = ranking_pb2_grpc.RankingServiceStub(channel).Recommend(
            ranking_pb2.RecommendRequest(user_id=user_id, k=K), timeout=5
        )
    shown = [
        (common_pb2.EVENT_TYPE_IMPRESSION, item.product_id, item.position) for item in answer.items
    ]
    shown.append((common_pb2.EVENT_TYPE_CLICK, answer.items[0].product_id, 1))
    events = [
        feedback_pb2.Event(
            event_id=f"console-e2e-{answer.recommendation_id}-{n}",
            user_id=user_id,
            product_id=product_id,
            event_type=kind,
            recommendation_id=answer.recommendation_id,
            model_version=answer.model_version,
            position=position,
        )
        for n, (kind, product_id, position) in enumerate(shown)
    ]
    with grpc.insecure_channel(platform.settings.feedback_addr) as channel:
        reply = feedback_pb2_grpc.FeedbackServiceStub(channel).RecordEvents(
            feedback_pb2.RecordEventsRequest(events=events), timeout=5
        )
    assert reply.accepted == len(events), reply
    return answer.model_version


def test_every_page_draws_without_errors_and_fits_a_phone(
    platform: Platform, console: Console, browser: Browser
) -> None:
    user_id = _user_with_history(platform)
    version = _shown_and_clicked(platform, user_id)
    with browsing(browser, console) as desktop:
        desktop.sign_in("reader")
        desktop.open(f"users/{user_id}?k={K}")
        product_id = desktop.cards()[0]
    pages = {
        "users": f"?q={user_id[:-2]}",
        "recommendations": f"users/{user_id}?k={K}&diversity=0.3&max_per_category=2",
        "portrait": f"users/{user_id}/portrait",
        "product": f"products/{product_id}",
        "models": "models",
        "compare": f"users/{user_id}/compare?k={K}",
    }
    charts = {"portrait", "product", "models"}
    for viewport, suffix in ((DESKTOP, ""), (PHONE, "-phone")):
        with browsing(browser, console, viewport) as web:
            web.sign_in("reader")
            for name, path in pages.items():
                web.open(path)
                if name in charts:
                    assert web.page.locator("svg").count() >= 1, f"{name}: no chart"
                if name == "models":  # the storefront's impressions, counted for the version
                    version_cell = web.page.locator(
                        "td:first-child", has_text=re.compile(f"^{version}$")
                    )
                    row = web.page.locator("table.online tbody tr").filter(has=version_cell)
                    assert row.count() == 1 and "no impressions" not in row.inner_text()
                if name == "users":
                    assert web.page.locator(f'a[href="./users/{user_id}"]').count() == 1
                web.fits()
                web.shot(name + suffix)

    log = console.log.read_text(errors="replace")
    assert user_id not in log  # as every Magpie process: no user id in a log line
    assert all(token not in log for token in console.tokens.values())
