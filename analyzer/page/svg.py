"""Charts as plain SVG, readable without colour and without JavaScript.

Two kinds: a time chart (lines over snapshot times, each with its own dash pattern and point
shape, a label at its end, vertical markers for causes) and horizontal bars (before / after
pairs, or one bar per statement; the two sides told apart by hatching and by their labels).
Every chart has a `<title>` and a `<desc>`; every text goes through `esc`, which also drops
the control characters XML does not allow, so a chart is valid inline in HTML and as a
stand-alone .svg file. Elements carry data attributes (`data-series`, `data-snapshot`,
`data-time`) so that a test can read the chart from the rendered page.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
DASHES = ("", "7 3", "2 3", "9 3 2 3", "1 6")
PATTERN_NAMES = ("solid", "dashed", "dotted", "dash-dot", "sparse dots")
WIDTH = 760
TEXT = 'font-family="sans-serif" font-size="11"'


def esc(text: object) -> str:
    """Text for HTML or XML: escaped, quotes included, XML-invalid characters removed."""
    return html.escape(_CONTROL.sub("", str(text)), quote=True)


def style_name(i: int) -> str:
    """How line i looks, in words (for legends read without colour)."""
    return f"{PATTERN_NAMES[i % len(DASHES)]} line, {SHAPES[i % len(SHAPES)]}s"


def _shape(i: int) -> str:
    kind = SHAPES[i % len(SHAPES)]
    if kind == "circle":
        return '<circle r="3.5" fill="#fff" stroke="#000" stroke-width="1.5"/>'
    if kind == "square":
        return '<rect x="-3.5" y="-3.5" width="7" height="7" fill="#000"/>'
    if kind == "triangle":
        return '<path d="M0,-4.5 L4,3 L-4,3 Z" fill="#fff" stroke="#000" stroke-width="1.3"/>'
    if kind == "diamond":
        return '<path d="M0,-4.5 L4.5,0 L0,4.5 L-4.5,0 Z" fill="#000"/>'
    return '<path d="M-4,-4 L4,4 M-4,4 L4,-4" stroke="#000" stroke-width="1.8"/>'


def _num(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def _head(chart_id: str, title: str, desc: str, height: int) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{esc(chart_id)}" '
            f'role="img" aria-labelledby="{esc(chart_id)}-t {esc(chart_id)}-d" '
            f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">',
            f'<title id="{esc(chart_id)}-t">{esc(title)}</title>',
            f'<desc id="{esc(chart_id)}-d">{esc(desc)}</desc>',
            f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>']


@dataclass(frozen=True)
class LinePoint:
    """One point of a line: when, the value, the tooltip, data attributes."""

    at: datetime
    value: float
    note: str
    attrs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Line:
    """One line: its short label (drawn at its end) and its points, oldest first."""

    key: str
    label: str
    points: Sequence[LinePoint]


@dataclass(frozen=True)
class Marker:
    """A moment marked on the time axis (a cause)."""

    at: datetime
    label: str  # short, drawn beside the marker
    title: str = ""  # the whole story, as its tooltip (default: the label)


def _time_label(t: datetime, span_seconds: float) -> str:
    t = t.astimezone(UTC)
    if span_seconds < 60:
        return f"{t:%H:%M:%S}.{t.microsecond // 100000}"
    return f"{t:%H:%M:%S}" if span_seconds < 600 else (
        f"{t:%H:%M}" if span_seconds < 86400 else f"{t:%m-%d %H:%M}")


class _Scale:
    """Values to y pixels: logarithmic when the values span more than a factor of 20."""

    def __init__(self, values: Sequence[float], top: float, bottom: float) -> None:
        positive = [v for v in values if v > 0]
        lo, hi = (min(positive), max(positive)) if positive else (1.0, 1.0)
        self.log = bool(positive) and hi / lo >= 20 and len(positive) == len(values)
        self.top, self.bottom = top, bottom
        if self.log:
            self.lo = float(math.floor(math.log10(lo)))
            self.hi = float(max(math.ceil(math.log10(hi)), self.lo + 1))
        else:
            self.lo, self.hi = 0.0, (hi * 1.1 if hi > 0 else 1.0)

    def y(self, v: float) -> float:
        x = (math.log10(max(v, 10.0 ** self.lo)) if self.log else v)
        return self.bottom - (x - self.lo) / (self.hi - self.lo) * (self.bottom - self.top)

    def ticks(self) -> list[float]:
        if self.log:
            return [10.0 ** e for e in range(int(self.lo), int(self.hi) + 1)]
        step = self.hi / 4
        return [step * i for i in range(5)]


def _spread(ys: Mapping[int, float], gap: float = 11.0) -> dict[int, float]:
    """End-label heights pushed apart so that no two labels overlap."""
    out: dict[int, float] = {}
    last = -math.inf
    for i, y in sorted(ys.items(), key=lambda kv: kv[1]):
        out[i] = last = max(y, last + gap)
    return out


def time_chart(chart_id: str, title: str, desc: str, lines: Sequence[Line],
               times: Sequence[datetime], markers: Sequence[Marker] = (),
               unit: str = "ms per call") -> str:
    """Lines over time; `times` (every snapshot) sets the time axis."""
    height, left, right, top, bottom = 330, 70, WIDTH - 60, 24, 270
    moments = sorted({*times, *(p.at for ln in lines for p in ln.points),
                      *(m.at for m in markers)})
    t0, t1 = (moments[0], moments[-1]) if moments else (datetime.now(UTC),) * 2
    span = max((t1 - t0).total_seconds(), 1.0)
    scale = _Scale([p.value for ln in lines for p in ln.points], top, bottom)

    def x(t: datetime) -> float:
        return left + (t - t0).total_seconds() / span * (right - left)

    out = _head(chart_id, title, desc, height)
    out.append(f'<g class="axes" {TEXT}>')
    for v in scale.ticks():
        y = scale.y(v)
        out.append(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_num(v)}</text>')
    for i in range(5):
        t = t0 + (t1 - t0) * (i / 4)
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{bottom}" y2="{bottom + 4}" '
                   f'stroke="#000"/><text x="{x(t):.1f}" y="{bottom + 16}" '
                   f'text-anchor="middle">{esc(_time_label(t, span))}</text>')
    out.append(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#000"/>'
               f'<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#000"/>'
               f'<text x="{(left + right) / 2}" y="{bottom + 32}" text-anchor="middle">'
               f'time (UTC)</text><text x="14" y="{(top + bottom) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {(top + bottom) / 2})">{esc(unit)}'
               f'{" (log scale)" if scale.log else ""}</text></g>')
    for m in markers:
        mx = x(m.at)
        side = 'text-anchor="end" ' if mx + 7 * len(m.label) > right else ""
        tx = mx - 5 if side else mx + 5
        out.append(f'<g class="cause-marker" data-time="{esc(m.at.isoformat())}">'
                   f'<title>{esc(m.title or m.label)}</title>'
                   f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{top - 8}" y2="{bottom}" '
                   f'stroke="#000" stroke-width="2" stroke-dasharray="5 2"/>'
                   f'<text x="{tx:.1f}" y="{top + 10}" {side}{TEXT} font-weight="bold" '
                   'paint-order="stroke" stroke="#fff" stroke-width="3">'
                   f'▼ {esc(m.label)}</text></g>')
    ends = _spread({i: scale.y(ln.points[-1].value) for i, ln in enumerate(lines)
                    if ln.points})
    for i, ln in enumerate(lines):
        pts = [(x(p.at), scale.y(p.value), p) for p in ln.points]
        out.append(f'<g class="series" data-series="{esc(ln.key)}" '
                   f'data-label="{esc(ln.label)}">')
        if len(pts) > 1:
            path = " ".join(f"{'M' if j == 0 else 'L'}{px:.1f},{py:.1f}"
                            for j, (px, py, _) in enumerate(pts))
            dash = DASHES[i % len(DASHES)]
            out.append(f'<path d="{path}" fill="none" stroke="#000" stroke-width="1.4"'
                       + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
        for px, py, p in pts:
            attrs = "".join(f' data-{esc(k)}="{esc(v)}"' for k, v in p.attrs.items())
            out.append(f'<g class="point" transform="translate({px:.1f},{py:.1f})"{attrs}>'
                       f'<title>{esc(p.note)}</title>{_shape(i)}</g>')
        if pts:
            px, py = pts[-1][0], ends[i]
            out.append(f'<text x="{px + 7:.1f}" y="{py + 4:.1f}" {TEXT} font-weight="bold">'
                       f'{esc(ln.label)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


@dataclass(frozen=True)
class Bar:
    """One bar: its value, whether hatched (the "before" side, or a marked one), its text."""

    value: float
    text: str
    hatched: bool = False


@dataclass(frozen=True)
class BarRow:
    """A labelled row of one or more bars."""

    label: str
    bars: Sequence[Bar]
    attrs: Mapping[str, str] = field(default_factory=dict)


def bar_chart(chart_id: str, title: str, desc: str, rows: Sequence[BarRow],
              legend: Sequence[tuple[bool, str]] = ()) -> str:
    """Horizontal bars, one row per label; `legend` explains hatched and solid."""
    left, right, bar_h, gap = 230, WIDTH - 170, 14, 10
    row_h = max((len(r.bars) for r in rows), default=1) * (bar_h + 2) + gap
    top = 12 + (22 if legend else 0)
    height = top + row_h * max(len(rows), 1) + 8
    peak = max((b.value for r in rows for b in r.bars), default=0.0) or 1.0
    out = _head(chart_id, title, desc, height)
    out.append(f'<defs><pattern id="{esc(chart_id)}-hatch" patternUnits="userSpaceOnUse" '
               'width="6" height="6" patternTransform="rotate(45)"><rect width="6" height="6" '
               'fill="#fff"/><line x1="0" y1="0" x2="0" y2="6" stroke="#000" '
               'stroke-width="2.5"/></pattern></defs>')

    def fill(hatched: bool) -> str:
        return (f'fill="url(#{esc(chart_id)}-hatch)" stroke="#000"' if hatched
                else 'fill="#444" stroke="#000"')

    lx = left
    for hatched, text in legend:
        out.append(f'<rect x="{lx}" y="8" width="14" height="12" {fill(hatched)}/>'
                   f'<text x="{lx + 18}" y="18" {TEXT}>{esc(text)}</text>')
        lx += 40 + 7 * len(text)
    for i, r in enumerate(rows):
        y0 = top + i * row_h
        attrs = "".join(f' data-{esc(k)}="{esc(v)}"' for k, v in r.attrs.items())
        label = r.label if len(r.label) <= 36 else r.label[:35] + "…"
        out.append(f'<g class="bar-row"{attrs}><title>{esc(r.label)}</title>'
                   f'<text x="{left - 6}" y="{y0 + bar_h - 2}" text-anchor="end" {TEXT}>'
                   f'{esc(label)}</text>')
        for j, b in enumerate(r.bars):
            y = y0 + j * (bar_h + 2)
            w = max(b.value / peak * (right - left), 1.0 if b.value > 0 else 0.0)
            out.append(f'<rect class="bar" x="{left}" y="{y}" width="{w:.1f}" '
                       f'height="{bar_h}" {fill(b.hatched)}/><text x="{left + w + 5:.1f}" '
                       f'y="{y + bar_h - 3}" {TEXT}>{esc(b.text)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)
