"""Small bar charts drawn on the server as inline SVG: no JavaScript, nothing fetched from elsewhere.

Each bar is one label (a day) and carries a `<title>`, so hovering it shows that day's numbers. The whole
chart is `role="img"` with a `<title>` and a `<desc>` summing it up for screen readers; the pages also put
the same numbers in a table beneath. Colours come from `tone-N` classes that the admin stylesheet sets for
light and dark schemes; the fill attributes here are only the fallback, and text uses `currentColor`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# The light-scheme fills, also the fallback when no stylesheet applies: blue, orange, red, green, pink,
# purple, each at least 3:1 against white (admin.css lightens them for dark schemes).
TONES = ("#0072b2", "#b86e00", "#c0392b", "#007a5a", "#b0508a", "#6a4c9c")

MARGIN_LEFT = 48
MARGIN_RIGHT = 10
MARGIN_TOP = 30
MARGIN_BOTTOM = 44
# Roughly the width of one axis label, to decide how many of them fit.
LABEL_SPACE = 52
# The phone drawing: about as wide in user units as a phone's column is in CSS pixels, so its text is
# drawn near the size the stylesheet gives it instead of being shrunk with a desktop-wide picture.
NARROW_WIDTH = 340
ROW_HEIGHT = 20
# Each series' own line within a row when they are drawn side by side: room for its value's text.
SUB_ROW = 14
NARROW_LABEL_SPACE = 58


@dataclass(frozen=True)
class Series:
    """One quantity over the labels; `tone` picks its colour (an index into `TONES`)."""

    name: str
    values: Sequence[float]
    tone: int = 0


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


def _coord(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def scale(top: float, *, integer: bool = True) -> tuple[float, list[float]]:
    """A round axis maximum at or above `top`, and its ticks (at most five steps, whole when `integer`)."""
    if not top > 0:
        top = 1.0
    raw = top / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * magnitude for m in steps if m * magnitude >= raw)
    if integer:
        step = max(1.0, float(math.ceil(step)))
    count = max(1, math.ceil(top / step - 1e-9))
    return step * count, [step * i for i in range(count + 1)]


def summary(labels: Sequence[str], series: Sequence[Series]) -> str:
    """One sentence a screen reader can say instead of the picture."""
    if not labels:
        return "No data."
    parts = [f"{len(labels)} bars from {labels[0]} to {labels[-1]}."]
    parts.append("Totals: " + ", ".join(f"{s.name} {_number(sum(s.values))}" for s in series) + ".")
    per_label = [sum(s.values[i] for s in series) for i in range(len(labels))]
    highest = max(per_label)
    if highest > 0:
        where = labels[per_label.index(highest)]
        parts.append(f"Highest: {_number(highest)} on {where}.")
    return " ".join(parts)


def _checked(labels: Sequence[str], series: Sequence[Series], axis_labels: Sequence[str] | None) -> list[str]:
    """The axis labels, once every series fits the labels; a bad chart is refused before any drawing."""
    axis = list(labels if axis_labels is None else axis_labels)
    if len(axis) != len(labels):
        raise ValueError("axis_labels must have one entry per label")
    for s in series:
        if len(s.values) != len(labels):
            raise ValueError(f"series {s.name!r} has {len(s.values)} values for {len(labels)} labels")
        if any(not math.isfinite(v) or v < 0 for v in s.values):
            raise ValueError(f"series {s.name!r} has a negative or non-finite value")
    return axis


def bar_chart(  # noqa: C901, PLR0913, PLR0915 - one SVG drawn in order: axes, bars, labels, table
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    chart_id: str,
    stacked: bool = True,
    axis_labels: Sequence[str] | None = None,
    y_label: str = "",
    x_label: str = "",
    width: int = 720,
    height: int = 240,
) -> Markup:
    """An SVG bar chart: one `<g class="bar">` per label, its series stacked or side by side.

    `labels` name the bars in their hover titles and in the summary; `axis_labels` (default: the same)
    are what is written under the axis, where only as many as fit are shown. Values must be finite and not
    negative. Every piece of text is escaped.
    """
    axis = _checked(labels, series, axis_labels)

    count = len(labels)
    plot_left, plot_right = MARGIN_LEFT, width - MARGIN_RIGHT
    plot_top, plot_bottom = MARGIN_TOP, height - MARGIN_BOTTOM
    plot_width, plot_height = plot_right - plot_left, plot_bottom - plot_top
    integer = all(float(v).is_integer() for s in series for v in s.values)
    if stacked:
        top = max((sum(s.values[i] for s in series) for i in range(count)), default=0.0)
    else:
        top = max((v for s in series for v in s.values), default=0.0)
    axis_max, ticks = scale(top, integer=integer)

    def y(value: float) -> float:
        return plot_bottom - plot_height * value / axis_max

    title_id, desc_id = f"{chart_id}-title", f"{chart_id}-desc"
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{escape(title_id)} {escape(desc_id)}">',
        f'<title id="{escape(title_id)}">{escape(title)}</title>',
        f'<desc id="{escape(desc_id)}">{escape(summary(labels, series))}</desc>',
    ]

    # Legend along the top.
    x = float(plot_left)
    out.append('<g class="legend">')
    for s in series:
        tone = s.tone % len(TONES)
        out.append(
            f'<rect class="tone-{tone}" fill="{TONES[tone]}" x="{_coord(x)}" y="8" width="11" height="11"/>'
            f'<text x="{_coord(x + 15)}" y="18" fill="currentColor">{escape(s.name)}</text>'
        )
        x += 15 + 8 * len(s.name) + 18
    out.append("</g>")

    # Grid lines and the value axis.
    out.append('<g class="axis y-axis">')
    for tick in ticks:
        ty = _coord(y(tick))
        out.append(
            f'<line x1="{plot_left}" x2="{plot_right}" y1="{ty}" y2="{ty}" '
            'stroke="currentColor" stroke-opacity="0.18"/>'
            f'<text x="{plot_left - 6}" y="{ty}" dy="0.35em" text-anchor="end" fill="currentColor">'
            f"{_number(tick)}</text>"
        )
    if y_label:
        mid = _coord(plot_top + plot_height / 2)
        out.append(
            f'<text class="axis-title" transform="translate(12 {mid}) rotate(-90)" text-anchor="middle" '
            f'fill="currentColor">{escape(y_label)}</text>'
        )
    out.append(
        f'<line x1="{plot_left}" x2="{plot_right}" y1="{plot_bottom}" y2="{plot_bottom}" '
        'stroke="currentColor" stroke-opacity="0.6"/>'
    )
    out.append("</g>")

    if count == 0:
        out.append(
            f'<text x="{_coord(plot_left + plot_width / 2)}" y="{_coord(plot_top + plot_height / 2)}" '
            'text-anchor="middle" fill="currentColor">No data</text></svg>'
        )
        return Markup("".join(out))

    slot = plot_width / count
    bar_width = max(1.0, slot * 0.72)
    every = max(1, math.ceil(count / max(1, plot_width // LABEL_SPACE)))
    out.append('<g class="bars">')
    for i, label in enumerate(labels):
        left = plot_left + slot * i + (slot - bar_width) / 2
        hover = f"{label}: " + ", ".join(f"{s.name} {_number(s.values[i])}" for s in series)
        out.append(
            f'<g class="bar"><title>{escape(hover)}</title>'
            f'<rect class="hit" x="{_coord(plot_left + slot * i)}" y="{plot_top}" '
            f'width="{_coord(slot)}" height="{plot_height}" fill="transparent"/>'
        )
        base = 0.0
        for j, s in enumerate(series):
            value = float(s.values[i])
            tone = s.tone % len(TONES)
            if stacked:
                x0, w, y0, y1 = left, bar_width, y(base + value), y(base)
                base += value
            else:
                w = bar_width / len(series)
                x0, y0, y1 = left + w * j, y(value), y(0)
            if value > 0:
                out.append(
                    f'<rect class="tone-{tone}" fill="{TONES[tone]}" x="{_coord(x0)}" y="{_coord(y0)}" '
                    f'width="{_coord(w)}" height="{_coord(max(0.5, y1 - y0))}"/>'
                )
        out.append("</g>")
    out.append("</g>")

    # Category axis: only every few labels when they would not fit, counted back from the last one.
    out.append('<g class="axis x-axis">')
    for i, text in enumerate(axis):
        if (count - 1 - i) % every:
            continue
        cx = _coord(plot_left + slot * (i + 0.5))
        out.append(
            f'<text x="{cx}" y="{plot_bottom + 15}" text-anchor="middle" fill="currentColor">'
            f"{escape(text)}</text>"
        )
    if x_label:
        out.append(
            f'<text class="axis-title" x="{_coord(plot_left + plot_width / 2)}" y="{height - 6}" '
            f'text-anchor="middle" fill="currentColor">{escape(x_label)}</text>'
        )
    out.append("</g></svg>")
    return Markup("".join(out))


def _legend(series: Sequence[Series], left: float, width: float) -> tuple[list[str], float]:
    """Colour keys that wrap onto more lines when the chart is narrow; returns them and their height."""
    out = ['<g class="legend">']
    x, line = left, 0
    for s in series:
        tone = s.tone % len(TONES)
        span = 15 + 8 * len(s.name) + 14
        if x > left and x + span > width:
            x, line = left, line + 1
        top = 6 + 18 * line
        out.append(
            f'<rect class="tone-{tone}" fill="{TONES[tone]}" x="{_coord(x)}" y="{top}" '
            'width="11" height="11"/>'
            f'<text x="{_coord(x + 15)}" y="{top + 10}" fill="currentColor">{escape(s.name)}</text>'
        )
        x += span
    out.append("</g>")
    return out, 18.0 * (line + 1) + 6


def hbar_chart(  # noqa: PLR0913 - one SVG drawn in order, with the same knobs as `bar_chart`
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    chart_id: str,
    stacked: bool = True,
    axis_labels: Sequence[str] | None = None,
    width: int = NARROW_WIDTH,
    label_space: int = NARROW_LABEL_SPACE,
    integer: bool | None = None,
) -> Markup:
    """Horizontal bars, one row per label, for narrow screens and for long labels (topics, methods).

    Each row carries its label on the left and its total (or each value, side by side) at the bar's end,
    so nothing has to be read off an axis. The height grows with the rows instead of the text shrinking.
    """
    axis = _checked(labels, series, axis_labels)
    if integer is None:
        integer = all(float(v).is_integer() for s in series for v in s.values)

    count = len(labels)
    sub_rows = 1 if stacked else max(1, len(series))
    row = ROW_HEIGHT if sub_rows == 1 else 8 + SUB_ROW * sub_rows
    legend, legend_height = _legend(series, 4, width)
    plot_left, plot_right = label_space, width - 40
    plot_top = legend_height + 4
    height = int(plot_top + row * max(count, 1) + 6)
    if stacked:
        top = max((sum(s.values[i] for s in series) for i in range(count)), default=0.0)
    else:
        top = max((v for s in series for v in s.values), default=0.0)
    axis_max, _ = scale(top, integer=integer)

    def length(value: float) -> float:
        return (plot_right - plot_left) * value / axis_max

    def number(value: float) -> str:
        return _number(value) if integer else f"{value:.2f}"

    title_id, desc_id = f"{chart_id}-title", f"{chart_id}-desc"
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart horizontal" id="{escape(chart_id)}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{escape(title_id)} {escape(desc_id)}">',
        f'<title id="{escape(title_id)}">{escape(title)}</title>',
        f'<desc id="{escape(desc_id)}">{escape(summary(labels, series))}</desc>',
        *legend,
    ]
    if count == 0:
        out.append(
            f'<text x="{_coord(width / 2)}" y="{_coord(plot_top + 14)}" text-anchor="middle" '
            'fill="currentColor">No data</text></svg>'
        )
        return Markup("".join(out))
    out.append(
        f'<line x1="{plot_left}" x2="{plot_left}" y1="{_coord(plot_top)}" y2="{height - 6}" '
        'stroke="currentColor" stroke-opacity="0.6"/>'
    )
    out.append('<g class="bars">')
    for i, label in enumerate(labels):
        row_top = plot_top + row * i
        hover = f"{label}: " + ", ".join(f"{s.name} {number(s.values[i])}" for s in series)
        out.append(
            f'<g class="bar"><title>{escape(hover)}</title>'
            f'<rect class="hit" x="0" y="{_coord(row_top)}" width="{width}" height="{row}" '
            'fill="transparent"/>'
            f'<text class="row-label" x="{plot_left - 5}" y="{_coord(row_top + row / 2)}" dy="0.35em" '
            f'text-anchor="end" fill="currentColor">{escape(axis[i])}</text>'
        )
        start = 0.0
        for j, s in enumerate(series):
            value = float(s.values[i])
            tone = s.tone % len(TONES)
            if stacked:
                x0, y0, bar_height = plot_left + length(start), row_top + 3, row - 6.0
                start += value
            else:
                x0, y0, bar_height = float(plot_left), row_top + 4 + SUB_ROW * j, SUB_ROW - 3.0
            if value > 0:
                out.append(
                    f'<rect class="tone-{tone}" fill="{TONES[tone]}" x="{_coord(x0)}" y="{_coord(y0)}" '
                    f'width="{_coord(max(0.5, length(value)))}" height="{_coord(bar_height)}"/>'
                )
            if not stacked:
                out.append(
                    f'<text class="value" x="{_coord(plot_left + length(value) + 3)}" '
                    f'y="{_coord(y0 + bar_height / 2)}" dy="0.35em" fill="currentColor">'
                    f"{number(value)}</text>"
                )
        if stacked:
            total = sum(float(s.values[i]) for s in series)
            out.append(
                f'<text class="value" x="{_coord(plot_left + length(total) + 4)}" '
                f'y="{_coord(row_top + row / 2)}" dy="0.35em" fill="currentColor">{number(total)}</text>'
            )
        out.append("</g>")
    out.append("</g></svg>")
    return Markup("".join(out))


def responsive_chart(  # noqa: PLR0913 - passes `bar_chart`'s knobs through
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    chart_id: str,
    stacked: bool = True,
    axis_labels: Sequence[str] | None = None,
    y_label: str = "",
    x_label: str = "",
) -> Markup:
    """The same figures drawn twice: columns for a wide screen, rows for a phone; the stylesheet shows one.

    A single wide SVG scaled down to a phone shrinks its text to half size; rows instead grow downwards
    at full size. The narrow drawing's id is `chart_id` + "-narrow".
    """
    wide = bar_chart(
        labels,
        series,
        title=title,
        chart_id=chart_id,
        stacked=stacked,
        axis_labels=axis_labels,
        y_label=y_label,
        x_label=x_label,
    )
    narrow = hbar_chart(
        labels, series, title=title, chart_id=f"{chart_id}-narrow", stacked=stacked, axis_labels=axis_labels
    )
    return (
        Markup('<div class="chart-wide">')
        + wide
        + Markup('</div><div class="chart-narrow">')
        + narrow
        + Markup("</div>")
    )
