"""The console's own pages as rendered HTML: relative links only, hostile text escaped,
feedback controls only for writers, the two versions side by side, the trace."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest

from magpie.runtime.auth import Role
from magpie.v1 import ranking_pb2
from services.console.auth import Viewer
from services.console.pages import READ_ONLY, Answer, Card
from services.console.web import templates

HOSTILE = '<script>alert("x")</script>'
TRACE_ID = "ab" * 16


class _Page(HTMLParser):
    """Every link, form action and resource of a page, and its forms' classes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.targets: list[str] = []
        self.forms: list[str] = []
        self.columns = 0
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.targets += [v for k, v in values.items() if k in ("href", "action", "src") and v]
        if tag == "form":
            self.forms.append(values.get("class") or "")
        if tag == "section" and values.get("class") == "column":
            self.columns += 1


def _card(position: int, title: str = "Tea", anchor: str = "p9") -> Card:
    return Card(
        position=position,
        product_id=f"p{position}",
        title=title,
        category="Food > Tea",
        brand="Nonna's",
        price="EUR 4.50",
        stock=3,
        score=1.5,
        source="co-visitation",
        reason=f"Because you viewed {title}",
        anchor_id=anchor,
    )


def _answer(version: str, title: str = "Tea") -> Answer:
    return Answer(
        recommendation_id=f"rec-{version}",
        model_version=version,
        cards=[_card(1, title), _card(2, anchor="")],
        degradations=[],
    )


def _render(name: str, base: str, viewer: Viewer, trace_url: str = "", **context: Any) -> str:
    return templates.get_template(name).render(
        base=base,
        viewer=viewer,
        trace_link=lambda trace_id: trace_url.format(trace_id=trace_id) if trace_url else "",
        **context,
    )


def _recommendations(viewer: Viewer, trace_url: str = "", user_id: str = "u1") -> str:
    return _render(
        "recommendations.html",
        "../",
        viewer,
        trace_url,
        user_id=user_id,
        ask=ranking_pb2.RecommendRequest(user_id=user_id, k=2),
        form={"k": "2"},
        answer=_answer("3", HOSTILE),
        aliases={"champion": 3, "previous": 2},
        trace_id=TRACE_ID,
        query="k=2",
        sent="dislike",
        sent_product="p7",
        read_only=READ_ONLY,
    )


WRITER = Viewer("bob", Role.WRITER, "t")
READER = Viewer("ann", Role.READER, "t")


@pytest.mark.parametrize("viewer", [WRITER, READER])
def test_every_link_and_form_is_relative(viewer: Viewer) -> None:
    page = _Page(_recommendations(viewer))

    assert page.targets
    for target in page.targets:
        assert target.startswith(("../", "data:")), target


def test_hostile_text_is_escaped() -> None:
    html = _recommendations(WRITER, user_id='u"><b>x')

    assert HOSTILE not in html
    assert "&lt;script&gt;" in html
    assert '"><b>x' not in html
    assert 'action="../users/u%22%3E%3Cb%3Ex/feedback"' in html


def test_a_writer_gets_feedback_controls_and_a_reader_a_note() -> None:
    writer, reader = _recommendations(WRITER), _recommendations(READER)

    assert _Page(writer).forms.count("feedback") == 2
    assert _Page(writer).forms.count("comment") == 2
    assert READ_ONLY not in writer
    assert "feedback" not in _Page(reader).forms
    assert READ_ONLY in reader
    assert 'value="k=2"' in writer  # the page's own query rides along, back after the POST


def test_the_trace_is_a_link_or_the_command() -> None:
    linked = _recommendations(READER, trace_url="https://jaeger.example/trace/{trace_id}")

    assert f"magpie trace {TRACE_ID}" in _recommendations(READER)
    assert f'href="https://jaeger.example/trace/{TRACE_ID}"' in linked
    assert f"magpie trace {TRACE_ID}" not in linked


def test_the_compare_page_sets_both_versions_side_by_side() -> None:
    html = _render(
        "compare.html",
        "../../",
        READER,
        user_id="u1",
        aliases={"champion": 3, "previous": 2},
        columns=[("champion", _answer("3")), ("previous", _answer("2"))],
        trace_id="",
        query="k=2",
    )
    page = _Page(html)

    assert page.columns == 2
    assert "Champion · version 3" in html
    assert "Previous · version 2" in html
    assert "rec-2" in html and "rec-3" in html
    assert page.forms.count("feedback") == 0
    assert all(t.startswith(("../../", "data:")) for t in page.targets)
