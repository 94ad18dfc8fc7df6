"""The console's SVG charts: well-formed, escaped, honest about empty data, and drawn to
scale."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import date, timedelta

import pytest
from markupsafe import Markup

from services.console.charts import (
    LABEL_WIDTH,
    VALUE_WIDTH,
    WIDTH,
    Interval,
    Series,
    bar_chart,
    count,
    grouped_bar_chart,
    interval_chart,
    line_chart,
    percent,
    stacked_bar,
)

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert(\"x\")</script> & 'quotes'"
DAYS = [date(2025, 5, 1) + timedelta(days=i) for i in range(7)]


def parse(chart: Markup) -> ET.Element:
    root = ET.fromstring(str(chart))
    assert root.tag == SVG + "svg"
    return root


def bars(root: ET.Element) -> list[float]:
    """Widths of the value bars (rects inside a titled group)."""
    return [float(rect.attrib["width"]) for rect in root.iter(SVG + "rect") if "x" in rect.attrib]


def texts(root: ET.Element) -> list[str]:
    return ["".join(node.itertext()) for node in root.iter(SVG + "text")]


def titles(root: ET.Element) -> list[str]:
    return [node.text or "" for node in root.iter(SVG + "title")]


CHARTS: dict[str, Callable[[str], Markup]] = {
    "bar": lambda label: bar_chart(label, [label, "b"], [3.0, 1.0]),
    "grouped": lambda label: grouped_bar_chart(label, {label: {label: 0.2, "champion": 0.1}}),
    "line": lambda label: line_chart(label, DAYS, [Series(label, [1.0] * 7)]),
    "interval": lambda label: interval_chart(label, {label: [Interval(label, 0.1, 0.05, 0.15)]}),
    "stacked": lambda label: stacked_bar(label, [(label, 2.0), ("b", 1.0)]),
}


@pytest.mark.parametrize("kind", sorted(CHARTS))
def test_each_chart_is_accessible_svg_that_scales_to_its_container(kind: str) -> None:
    root = parse(CHARTS[kind]("Sales"))

    assert root.attrib["role"] == "img"
    assert root.attrib["aria-label"] == "Sales"
    assert root.attrib["width"] == "100%"
    assert root.attrib["viewBox"].startswith(f"0 0 {WIDTH} ")
    assert titles(root)[0] == "Sales"


@pytest.mark.parametrize("kind", sorted(CHARTS))
def test_hostile_labels_are_text_not_markup(kind: str) -> None:
    chart = CHARTS[kind](HOSTILE)

    root = parse(chart)

    assert "<script" not in str(chart)
    assert not list(root.iter(SVG + "script"))
    assert root.attrib["aria-label"] == HOSTILE
    assert any(HOSTILE in title for title in titles(root)[1:])


@pytest.mark.parametrize(
    "chart",
    [
        bar_chart("Empty", [], []),
        grouped_bar_chart("Empty", {"NDCG@10": {}}),
        line_chart("Empty", [], []),
        line_chart("Empty", DAYS, []),
        interval_chart("Empty", {"CTR": []}),
        stacked_bar("Empty", [("views", 0.0)]),
        stacked_bar("Empty", []),
    ],
)
def test_empty_data_says_so(chart: Markup) -> None:
    root = parse(chart)

    assert texts(root) == ["No data yet."]


def test_bars_are_proportional_to_their_values() -> None:
    root = parse(bar_chart("Counts", ["a", "b", "c"], [40.0, 10.0, 0.0]))

    a, b, c = bars(root)
    assert a == pytest.approx(4 * b, rel=0.01)
    assert c == 0
    assert "40" in texts(root)


def test_the_axis_reaches_the_largest_value_with_round_ticks() -> None:
    root = parse(bar_chart("Counts", ["a"], [37.0]))

    labels = texts(root)[2:]
    assert labels == ["0", "10", "20", "30", "40"]
    (width,) = bars(root)
    assert width == pytest.approx(37 / 40 * (WIDTH - VALUE_WIDTH - LABEL_WIDTH), rel=0.01)


def test_counts_get_whole_ticks_and_fractions_get_fine_ones() -> None:
    counts = parse(bar_chart("Counts", ["a", "b"], [2, 1]))
    shares = parse(bar_chart("Shares", ["a"], [0.3], fmt=percent))

    assert texts(counts)[4:] == ["0", "1", "2"]
    assert texts(shares)[2:] == ["0%", "10%", "20%", "30%"]


def test_grouped_bars_share_one_scale_and_a_colour_per_series() -> None:
    groups = {
        "NDCG@10": {"candidate": 0.3, "popularity": 0.1},
        "HR@10": {"candidate": 0.6, "champion": 0.45},
    }

    root = parse(grouped_bar_chart("Offline metrics", groups))

    rects = [rect for rect in root.iter(SVG + "rect")]
    widths = [float(rect.attrib["width"]) for rect in rects]
    assert widths[0] == pytest.approx(widths[2] / 2, rel=0.01)
    assert widths[1] == pytest.approx(widths[0] / 3, rel=0.01)
    assert rects[0].attrib["fill"] == rects[2].attrib["fill"]
    assert len({rect.attrib["fill"] for rect in rects}) == 3
    assert "HR@10, champion: 0.450" in titles(root)


def test_line_heights_follow_the_values_and_each_day_has_a_tooltip() -> None:
    values = [0.0, 5.0, 10.0, 0.0, 0.0, 0.0, 10.0]

    root = parse(line_chart("Activity", DAYS, [Series("clicks", values), Series("views", values)]))

    line = next(root.iter(SVG + "polyline"))
    ys = [float(point.split(",")[1]) for point in line.attrib["points"].split()]
    assert ys[0] - ys[1] == pytest.approx(ys[1] - ys[2], abs=0.1)
    assert ys[0] > ys[1] > ys[2]
    assert ys[2] == ys[6]
    assert "2025-05-02: clicks 5, views 5" in titles(root)
    assert len(list(root.iter(SVG + "polyline"))) == 2
    assert {"clicks", "views"} <= set(texts(root))


def test_a_single_day_is_drawn_in_the_middle() -> None:
    root = parse(line_chart("Activity", DAYS[:1], [Series("clicks", [3.0])]))

    (dot,) = root.iter(SVG + "circle")
    assert math.isfinite(float(dot.attrib["cx"]))


def test_intervals_place_point_and_whiskers_in_order_on_their_panels_own_axis() -> None:
    panels = {
        "CTR": [Interval("v1", 0.10, 0.08, 0.12), Interval("v2", 0.20, 0.15, 0.25)],
        "Purchase rate": [Interval("v1", 0.01, 0.005, 0.02)],
    }

    root = parse(interval_chart("Online metrics", panels))

    points = [float(c.attrib["cx"]) for c in root.iter(SVG + "circle")]
    assert points[1] - LABEL_WIDTH == pytest.approx(2 * (points[0] - LABEL_WIDTH), rel=0.01)
    # Each panel has its own axis: a 1% rate is not squashed against a 20% one.
    assert points[2] > points[0]
    whiskers = [g for g in root.iter(SVG + "g")]
    first = [float(line.attrib["x1"]) for line in whiskers[0].iter(SVG + "line")]
    assert first[0] < points[0] < float(next(whiskers[0].iter(SVG + "line")).attrib["x2"])
    assert "CTR, v2: 20% (95% CI 15% to 25%)" in titles(root)


def test_stacked_parts_fill_the_width_by_share() -> None:
    root = parse(stacked_bar("Recent", [("views", 3.0), ("clicks", 1.0)]))

    views, clicks = (float(r.attrib["width"]) for r in list(root.iter(SVG + "rect"))[:2])
    assert views + clicks == pytest.approx(WIDTH, abs=0.2)
    assert views == pytest.approx(3 * clicks, rel=0.01)
    assert "clicks: 1 (25%)" in titles(root)


def test_non_finite_and_negative_values_draw_as_zero_but_read_true() -> None:
    chart = bar_chart("Odd", ["nan", "negative", "one"], [math.nan, -2.0, 1.0])

    root = parse(chart)

    assert bars(root)[:2] == [0.0, 0.0]
    assert "nan" not in root.attrib["viewBox"]
    assert "negative: -2" in titles(root)


@pytest.mark.parametrize(
    ("value", "text"), [(0, "0"), (950, "950"), (1234, "1.23k"), (3_400_000, "3.4M"), (2.5, "2.5")]
)
def test_counts_read_compactly(value: float, text: str) -> None:
    assert count(value) == text


def test_percentages() -> None:
    assert percent(0.0412) == "4.12%"
    assert percent(0) == "0%"
