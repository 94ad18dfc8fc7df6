"""Server-side SVG charts for the console: small, legible and safe to embed.

Each function returns one ``<svg>`` as ``markupsafe.Markup``. It scales to its container
(a ``viewBox`` and ``width="100%"``, so it shrinks to a phone's width), names itself for
screen readers (``role="img"``, ``aria-label`` and a ``<title>``) and carries every value
in a ``<title>`` tooltip. All text that came from data is escaped: a hostile product title
cannot inject markup. With nothing to draw, a chart says so instead of failing.

Values are drawn from zero (counts, rates and offline metrics are never negative; a
negative or non-finite value is drawn as zero, its tooltip still tells the truth), on an
axis rounded up to a "nice" number with a few labelled ticks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

__all__ = [
    "LABEL_WIDTH",
    "VALUE_WIDTH",
    "WIDTH",
    "Interval",
    "Series",
    "bar_chart",
    "count",
    "decimal",
    "grouped_bar_chart",
    "interval_chart",
    "line_chart",
    "percent",
    "stacked_bar",
]

Format = Callable[[float], str]

WIDTH = 520
"""Width of every chart's viewBox; heights follow from the rows drawn."""
MAX_WIDTH = "40rem"
"""Widest a chart is drawn (it shrinks below that with its container)."""
FONT = 13
ROW = 20
LABEL_WIDTH = 150
"""Column for row labels of the horizontal charts; longer labels are cut (in full in the
tooltip)."""
LABEL_CHARS = 18
VALUE_WIDTH = 60
"""Room right of the plot for a bar's value."""
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#555555")
"""Okabe-Ito colours, told apart by colour-blind readers too."""
DASHES = ("none", "6 3", "2 3", "8 3 2 3")
"""Line styles of a line chart's series, in turn: lines that coincide stay visible, and
colour is not the only cue."""
INK = "#222222"
GRID = "#DDDDDD"


@dataclass(frozen=True)
class Series:
    """One line of a line chart: a value per day."""

    name: str
    values: Sequence[float]


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval, for one row of an interval chart."""

    label: str
    value: float
    low: float
    high: float


def count(value: float) -> str:
    """A count, compact: 950, 1.2k, 3.4M."""
    for divisor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= divisor:
            return f"{value / divisor:.3g}{suffix}"
    return f"{value:.3g}"


def percent(value: float) -> str:
    """A proportion as a percentage: 0.0412 -> 4.12%."""
    return f"{value * 100:.3g}%"


def decimal(value: float) -> str:
    """A score such as NDCG: 0.1234 -> 0.123."""
    return f"{value:.3f}"


def bar_chart(
    title: str, labels: Sequence[str], values: Sequence[float], *, fmt: Format = count
) -> Markup:
    """Horizontal bars, one per label, in the order given."""
    if not labels:
        return _empty(title)
    axis = _Axis(values, LABEL_WIDTH, WIDTH - VALUE_WIDTH)
    parts: list[str] = []
    y = 8.0
    for label, value in zip(labels, values, strict=True):
        parts.append(_bar_row(y, label, value, axis, PALETTE[0], fmt, f"{label}: {fmt(value)}"))
        y += ROW
    parts.append(axis.draw(y + 4, fmt))
    return _svg(title, y + 24, parts)


def grouped_bar_chart(
    title: str, groups: Mapping[str, Mapping[str, float]], *, fmt: Format = decimal
) -> Markup:
    """Horizontal bars in groups: for each group (e.g. a metric) a heading and one bar per
    series it has (e.g. candidate, champion, baselines). A series keeps its colour across
    groups; one a group lacks is simply not drawn there."""
    values = [value for series in groups.values() for value in series.values()]
    if not values:
        return _empty(title)
    colours = _colours(name for series in groups.values() for name in series)
    axis = _Axis(values, LABEL_WIDTH, WIDTH - VALUE_WIDTH)
    parts: list[str] = []
    y = 8.0
    for group, series in groups.items():
        parts.append(_text(0, y + 14, group, weight="bold"))
        y += ROW
        for name, value in series.items():
            tooltip = f"{group}, {name}: {fmt(value)}"
            parts.append(_bar_row(y, name, value, axis, colours[name], fmt, tooltip, indent=12))
            y += ROW
    parts.append(axis.draw(y + 4, fmt))
    return _svg(title, y + 24, parts)


def line_chart(
    title: str, days: Sequence[date], series: Sequence[Series], *, fmt: Format = count
) -> Markup:
    """One line per series over consecutive days, a legend above, a tooltip per day with
    every series' value."""
    if not days or not series:
        return _empty(title)
    colours = _colours(s.name for s in series)
    legend, top = _legend([(s.name, colours[s.name]) for s in series], 0.0)
    plot_height = 160.0
    axis = _Axis((v for s in series for v in s.values), 0.0, plot_height)
    left, right = 48.0, WIDTH - 12.0
    step = (right - left) / (len(days) - 1) if len(days) > 1 else 0.0
    xs = [left + i * step if step else (left + right) / 2 for i in range(len(days))]

    def y_of(value: float) -> float:
        return top + plot_height - axis.scale(value)

    parts = [legend]
    for tick in axis.ticks:
        y = y_of(tick)
        parts.append(_line(left, y, right, y, GRID))
        parts.append(_text(left - 6, y + 4, fmt(tick), anchor="end"))
    for index in _spread(len(days), 5):
        anchor = "start" if index == 0 else "end" if index == len(days) - 1 else "middle"
        parts.append(_text(xs[index], top + plot_height + 16, _day(days[index]), anchor=anchor))
    for index, s in enumerate(series):
        points = " ".join(f"{x:.1f},{y_of(v):.1f}" for x, v in zip(xs, s.values, strict=True))
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colours[s.name]}" '
            f'stroke-width="2" stroke-linejoin="round" '
            f'stroke-dasharray="{DASHES[index % len(DASHES)]}"/>'
        )
        parts.extend(_dot(x, y_of(v), colours[s.name]) for x, v in zip(xs, s.values, strict=True))
    half = max(step / 2, 4.0)
    for index, (x, day) in enumerate(zip(xs, days, strict=True)):
        readings = ", ".join(f"{s.name} {fmt(s.values[index])}" for s in series)
        parts.append(
            f'<rect x="{x - half:.1f}" y="{top:.1f}" width="{2 * half:.1f}" '
            f'height="{plot_height:.1f}" fill="transparent">'
            f"<title>{escape(f'{day.isoformat()}: {readings}')}</title></rect>"
        )
    return _svg(title, top + plot_height + 24, parts)


def interval_chart(
    title: str, panels: Mapping[str, Sequence[Interval]], *, fmt: Format = percent
) -> Markup:
    """Point estimates with their confidence-interval whiskers: one panel per metric (each
    on its own axis, as rates differ by orders of magnitude), one row per label."""
    if not any(panels.values()):
        return _empty(title)
    parts: list[str] = []
    y = 8.0
    for metric, rows in panels.items():
        if not rows:
            continue
        axis = _Axis((v for r in rows for v in (r.high, r.value)), LABEL_WIDTH, WIDTH - VALUE_WIDTH)
        parts.append(_text(0, y + 14, metric, weight="bold"))
        y += ROW
        for row in rows:
            middle = y + ROW / 2
            low, high, point = (axis.x(v) for v in (row.low, row.high, row.value))
            ci = f"95% CI {fmt(row.low)} to {fmt(row.high)}"
            tooltip = f"{metric}, {row.label}: {fmt(row.value)} ({ci})"
            parts.append(
                f"<g><title>{escape(tooltip)}</title>"
                + _text(12, middle + 4, _cut(row.label))
                + _line(low, middle, high, middle, INK)
                + _line(low, middle - 5, low, middle + 5, INK)
                + _line(high, middle - 5, high, middle + 5, INK)
                + f'<circle cx="{point:.1f}" cy="{middle:.1f}" r="4" fill="{PALETTE[0]}"/>'
                + _text(WIDTH - VALUE_WIDTH + 6, middle + 4, fmt(row.value))
                + "</g>"
            )
            y += ROW
        parts.append(axis.draw(y + 4, fmt))
        y += 32
    return _svg(title, y, parts)


def stacked_bar(title: str, parts: Sequence[tuple[str, float]], *, fmt: Format = count) -> Markup:
    """One bar split into its parts by share, with a legend giving each part's value and
    share (e.g. a user's recent interactions by kind)."""
    total = sum(_drawn(value) for _, value in parts)
    if total <= 0:
        return _empty(title)
    colours = _colours(name for name, _ in parts)
    drawn: list[str] = []
    x = 0.0
    for name, value in parts:
        width = _drawn(value) / total * WIDTH
        tooltip = f"{name}: {fmt(value)} ({percent(_drawn(value) / total)})"
        drawn.append(
            f'<rect x="{x:.1f}" y="0" width="{width:.1f}" height="24" fill="{colours[name]}">'
            f"<title>{escape(tooltip)}</title></rect>"
        )
        x += width
    items = [(f"{name} {fmt(value)}", colours[name]) for name, value in parts]
    legend, bottom = _legend(items, 32.0)
    drawn.append(legend)
    return _svg(title, bottom, drawn)


class _Axis:
    """A value axis from zero to a nice number at or above the largest value, mapped onto
    [start, end] in chart units."""

    def __init__(self, values: Iterable[float], start: float, end: float) -> None:
        drawn = [_drawn(value) for value in values]
        self.ticks = _ticks(max(drawn, default=0.0), whole=all(v.is_integer() for v in drawn))
        self.start, self.end = start, end

    def scale(self, value: float) -> float:
        """Length from zero to ``value``."""
        return min(_drawn(value), self.ticks[-1]) / self.ticks[-1] * (self.end - self.start)

    def x(self, value: float) -> float:
        return self.start + self.scale(value)

    def draw(self, y: float, fmt: Format) -> str:
        """The axis line at ``y`` with its ticks labelled below."""
        marks = [_line(self.start, y, self.end, y, GRID)]
        for tick in self.ticks:
            x = self.x(tick)
            marks.append(_line(x, y - 3, x, y + 3, GRID))
            marks.append(_text(x, y + 15, fmt(tick), anchor="middle", size=FONT - 2))
        return "".join(marks)


def _ticks(largest: float, *, whole: bool, count: int = 4) -> list[float]:
    """Zero and up to ``count`` evenly spaced ticks of a 1, 2, 2.5 or 5 step (a whole step
    for ``whole`` values: no 0.5 purchases), the last at or above ``largest``."""
    if largest <= 0:
        return [0.0, 1.0]
    rough = largest / count
    magnitude = 10.0 ** math.floor(math.log10(rough))
    step = next(
        m * magnitude
        for m in (1, 2, 2.5, 5, 10)
        if m * magnitude >= rough and (not whole or (m * magnitude).is_integer())
    )
    return [i * step for i in range(math.ceil(largest / step - 1e-9) + 1)]


def _drawn(value: float) -> float:
    """The length ``value`` is drawn with (a float even for an int count)."""
    return float(value) if math.isfinite(value) and value > 0 else 0.0


def _bar_row(
    y: float,
    label: str,
    value: float,
    axis: _Axis,
    colour: str,
    fmt: Format,
    tooltip: str,
    indent: float = 0.0,
) -> str:
    width = axis.scale(value)
    return (
        f"<g><title>{escape(tooltip)}</title>"
        + _text(indent, y + 14, _cut(label))
        + f'<rect x="{axis.start:.1f}" y="{y + 3:.1f}" width="{width:.1f}" height="{ROW - 6}" '
        f'fill="{colour}"/>' + _text(axis.start + width + 4, y + 14, fmt(value)) + "</g>"
    )


def _legend(items: Sequence[tuple[str, str]], top: float) -> tuple[str, float]:
    """Swatches and names left to right, wrapping; returns the markup and the y below it."""
    marks: list[str] = []
    x, y = 0.0, top
    for name, colour in items:
        width = 18 + 7.5 * len(name) + 14
        if x and x + width > WIDTH:
            x, y = 0.0, y + ROW
        marks.append(f'<rect x="{x:.1f}" y="{y + 4:.1f}" width="12" height="12" fill="{colour}"/>')
        marks.append(_text(x + 18, y + 14, name))
        x += width
    return "".join(marks), y + ROW + 8


def _colours(names: Iterable[str]) -> dict[str, str]:
    colours: dict[str, str] = {}
    for name in names:
        colours.setdefault(name, PALETTE[len(colours) % len(PALETTE)])
    return colours


def _spread(length: int, most: int) -> list[int]:
    """Up to ``most`` indices evenly spread over ``range(length)``, both ends included."""
    if length <= most:
        return list(range(length))
    return sorted({round(i * (length - 1) / (most - 1)) for i in range(most)})


def _day(day: date) -> str:
    return f"{day.day} {day:%b}"


def _cut(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _text(
    x: float,
    y: float,
    content: str,
    *,
    anchor: str = "start",
    weight: str = "normal",
    size: int = FONT,
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-weight="{weight}" '
        f'font-size="{size}" fill="{INK}">{escape(content)}</text>'
    )


def _line(x1: float, y1: float, x2: float, y2: float, colour: str) -> str:
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" '
        'stroke-width="1"/>'
    )


def _dot(x: float, y: float, colour: str) -> str:
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>'


def _empty(title: str) -> Markup:
    return _svg(title, 40, [_text(0, 24, "No data yet.")])


def _svg(title: str, height: float, parts: Sequence[str]) -> Markup:
    label = escape(title)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0f}" '
        f'width="100%" role="img" aria-label="{label}" class="chart" '
        f'font-family="system-ui, sans-serif" style="max-width: {MAX_WIDTH}; height: auto">'
        f"<title>{label}</title>{''.join(parts)}</svg>"
    )
