"""Small, dependency-free SVG line charts for the HTML report.

The report must open offline, so nothing is fetched and no plotting library is needed: each chart
is an inline ``<svg>`` string drawn here — axes with "nice" ticks, one polyline per series (a gap
in the data breaks the line rather than drawing a false slope across it), and vertical markers
for censor events, numbered so the event table under the charts can explain them.

Pure functions returning markup; all text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Bar", "Marker", "Series", "bar_timeline", "line_chart", "nice_ticks"]


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    points: Sequence[tuple[float, float | None]]
    """(x, y); y ``None`` is a gap."""
    color: str
    dashed: bool = False


@dataclass(frozen=True, slots=True)
class Marker:
    x: float
    label: str
    """Short text drawn at the top of the line (e.g. the event's number)."""
    title: str = ""
    """Tooltip (shown on hover in a browser)."""
    color: str = "#c0392b"
    band_to: float | None = None
    """Shade from ``x`` to ``band_to`` (a policy window), instead of a single line."""


@dataclass(frozen=True, slots=True)
class _Frame:
    width: int
    height: int
    left: int = 56
    right: int = 14
    top: int = 22
    bottom: int = 30

    @property
    def plot_w(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> int:
        return self.height - self.top - self.bottom


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values covering [lo, hi], about ``target`` of them (1-2-5 steps)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    ticks = [round(math.floor(lo / step) * step, 10)]
    # The last tick is the first at or above hi, so the data never runs off the top.
    while ticks[-1] < hi - step * 1e-6 and len(ticks) <= 50:
        ticks.append(round(ticks[0] + len(ticks) * step, 10))
    return ticks


def _fmt_tick(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 10000:
        return f"{v / 1000:g}k"
    if abs(v) >= 1:
        return f"{v:g}"
    return f"{v:.3g}"


def _marker_lines(markers: Sequence[Marker], px: Callable[[float], float], top: float, plot_h: float) -> list[str]:
    """Vertical marker lines with their badges; badges of nearby markers are stacked in rows
    rather than drawn over each other."""
    lines: list[str] = []
    badges: list[str] = []
    row_ends: list[float] = []
    for m in sorted((m for m in markers if m.band_to is None), key=lambda m: m.x):
        x = px(m.x)
        w = 8 + 7 * len(m.label)
        row = next((i for i, end in enumerate(row_ends) if x - w / 2 > end + 2), len(row_ends))
        if row == len(row_ends):
            row_ends.append(0.0)
        row_ends[row] = x + w / 2
        y = top - 1 + 15 * (row % 4)
        tip = f"<title>{escape(m.title or m.label)}</title>"
        lines.append(
            f'<g class="marker">{tip}<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" '
            f'stroke="{escape(m.color)}"/></g>'
        )
        # Badges after every line, so no line is drawn across another marker's number.
        badges.append(
            f'<g class="marker">{tip}<rect x="{x - w / 2:.1f}" y="{y}" width="{w}" height="13" rx="3" '
            f'fill="{escape(m.color)}"/><text x="{x:.1f}" y="{y + 10}" text-anchor="middle">{escape(m.label)}</text></g>'
        )
    return lines + badges


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    unit: str,
    x_max: float | None = None,
    markers: Sequence[Marker] = (),
    width: int = 1080,
    height: int = 190,
    y_floor: float = 0.0,
    y_ceiling: float | None = None,
    empty_text: str = "no samples",
    draw_title: bool = True,
    y_min_top: float = 1.0,
) -> str:
    """An inline SVG chart. The x axis is seconds from 0 to ``x_max`` (default: the data's end).

    ``draw_title=False`` leaves the title to the page (it is still the chart's accessible name).
    """
    f = _Frame(width, height)
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points if y is not None and math.isfinite(y)]
    x_hi = x_max if x_max is not None else (max(xs) if xs else 1.0)
    x_hi = max(x_hi, *(m.x for m in markers), *(m.band_to or 0.0 for m in markers), 1.0) if markers else max(x_hi, 1.0)
    # A flat zero line still gets a readable axis (not 0..1e-9): at least ``y_min_top``.
    y_hi = max(max(ys) if ys else 0.0, y_min_top)
    if y_ceiling is not None:
        y_hi = min(max(y_hi, y_floor + 1e-9), y_ceiling)
    y_ticks = nice_ticks(y_floor, y_hi if y_hi > y_floor else y_floor + 1.0)
    y_top = y_ticks[-1]
    x_ticks = nice_ticks(0.0, x_hi, target=10)
    x_top = max(x_ticks[-1], x_hi)

    def px(x: float) -> float:
        return f.left + f.plot_w * (x / x_top if x_top else 0.0)

    def py(y: float) -> float:
        y = min(max(y, y_floor), y_top)
        return f.top + f.plot_h * (1.0 - (y - y_floor) / (y_top - y_floor or 1.0))

    out: list[str] = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text class="cunit" x="{f.left - 8}" y="14" text-anchor="end">{escape(unit)}</text>',
    ]
    if draw_title:
        out.append(f'<text class="ctitle" x="{f.left}" y="14">{escape(title)}</text>')
    # Bands (windows) under everything else.
    for m in markers:
        if m.band_to is not None:
            x0, x1 = px(m.x), px(m.band_to)
            out.append(
                f'<rect class="band" x="{x0:.1f}" y="{f.top}" width="{max(x1 - x0, 1):.1f}" '
                f'height="{f.plot_h}" fill="{escape(m.color)}" fill-opacity="0.08">'
                f"<title>{escape(m.title or m.label)}</title></rect>"
            )
    for v in y_ticks:
        y = py(v)
        out.append(f'<line class="grid" x1="{f.left}" x2="{f.left + f.plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{f.left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt_tick(v)}</text>')
    for v in x_ticks:
        if v > x_top + 1e-9:
            continue
        x = px(v)
        out.append(f'<line class="xgrid" x1="{x:.1f}" x2="{x:.1f}" y1="{f.top}" y2="{f.top + f.plot_h}"/>')
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{f.top + f.plot_h + 15}" text-anchor="middle">{_fmt_tick(v)}</text>'
        )
    out.append(
        f'<text class="tick" x="{f.left + f.plot_w}" y="{height - 2}" text-anchor="end">seconds since call start</text>'
    )
    out.append(f'<rect class="frame" x="{f.left}" y="{f.top}" width="{f.plot_w}" height="{f.plot_h}" fill="none"/>')
    if not ys:
        out.append(
            f'<text class="empty" x="{f.left + f.plot_w / 2:.1f}" y="{f.top + f.plot_h / 2 + 4:.1f}" '
            f'text-anchor="middle">{escape(empty_text)}</text>'
        )
    for s in series:
        runs: list[list[tuple[float, float]]] = [[]]
        for x, value in sorted(s.points, key=lambda p: p[0]):
            if value is None or not math.isfinite(value):
                if runs[-1]:
                    runs.append([])
                continue
            runs[-1].append((px(x), py(value)))
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        for run in runs:
            if len(run) == 1:
                (x, y) = run[0]
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{escape(s.color)}"/>')
            elif run:
                pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                out.append(
                    f'<polyline class="series" points="{pts}" stroke="{escape(s.color)}"{dash}>'
                    f"<title>{escape(s.label)}</title></polyline>"
                )
    out += _marker_lines(markers, px, f.top, f.plot_h)
    out.append("</svg>")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    start: float
    end: float
    color: str
    title: str = ""


def bar_timeline(
    bars: Sequence[Bar],
    *,
    title: str,
    x_max: float | None = None,
    markers: Sequence[Marker] = (),
    width: int = 1080,
    row_height: int = 22,
    label_width: int = 160,
    x_label: str = "seconds",
) -> str:
    """One horizontal row per label (e.g. a probe from its start to its end; bars with the same
    label share its row: a repeated probe's attempts as a strip) on a time axis, with the same
    markers as :func:`line_chart`."""
    rows = list(dict.fromkeys(b.label for b in bars))
    top, bottom = 22, 30
    height = top + bottom + row_height * max(len(rows), 1)
    left, right = label_width, 14
    plot_w = width - left - right
    plot_h = height - top - bottom
    x_hi = max([x_max or 0.0, *(b.end for b in bars), *(m.x for m in markers), 1.0])
    x_ticks = nice_ticks(0.0, x_hi, target=10)
    x_top = max(x_ticks[-1], x_hi)

    def px(x: float) -> float:
        return left + plot_w * (max(x, 0.0) / x_top)

    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">'
    ]
    for v in x_ticks:
        x = px(v)
        out.append(f'<line class="xgrid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{top + plot_h + 15}" text-anchor="middle">{_fmt_tick(v)}</text>')
    out.append(f'<text class="tick" x="{left + plot_w}" y="{height - 2}" text-anchor="end">{escape(x_label)}</text>')
    out.append(f'<rect class="frame" x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none"/>')
    for i, label in enumerate(rows):
        y = top + i * row_height
        out.append(
            f'<text class="tick" x="{left - 8}" y="{y + row_height / 2 + 4:.1f}" text-anchor="end">{escape(label)}</text>'
        )
    for b in bars:
        y = top + rows.index(b.label) * row_height
        x0, x1 = px(b.start), px(b.end)
        out.append(
            f'<rect x="{x0:.1f}" y="{y + 4}" width="{max(x1 - x0, 2):.1f}" height="{row_height - 8}" rx="3" '
            f'fill="{escape(b.color)}"><title>{escape(b.title or b.label)}</title></rect>'
        )
    out += _marker_lines(markers, px, top, plot_h)
    out.append("</svg>")
    return "".join(out)
