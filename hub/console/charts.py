"""Charts as inline SVG, drawn on the server: no chart library, nothing loaded from a CDN, and the live
dashboard swaps them in with the rest of the page fragment. Colours come from CSS classes (console.css)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from accounts.usage import compact


@dataclass(frozen=True)
class Series:
    name: str
    css: str  # a class of console.css giving the fill colour


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value`` (the y axis' top)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def stacked_bars(
    labels: Sequence[str],
    values: Sequence[Sequence[float]],
    series: Sequence[Series],
    *,
    title: str,
    tips: Sequence[str] | None = None,
    width: int = 720,
    height: int = 220,
) -> SafeString:
    """One bar per label, stacked by series; ``values[i][s]`` is label i's value of series s.

    Every bar carries a ``<title>`` tooltip (``tips[i]``, or the values), and the chart an accessible name.
    """
    left, right, top, bottom = 48, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    y_max = nice_ceiling(max((sum(v) for v in values), default=0))
    n = max(len(labels), 1)
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.72)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg">'
    ]
    for i in range(5):  # grid lines and y ticks at 0, 25, 50, 75, 100 %
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        tick = compact(y_max * i / 4)
        parts.append(f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    every = math.ceil(n / 12)  # at most ~12 x labels
    for i, (label, stack) in enumerate(zip(labels, values, strict=True)):
        x = left + slot * i + (slot - bar_w) / 2
        pairs = zip(stack, series, strict=True)
        tip = tips[i] if tips else f"{label}: " + ", ".join(f"{v:,.0f} {s.name}" for v, s in pairs)
        parts.append(f"<g><title>{escape(tip)}</title>")
        base = top + plot_h
        for value, s in zip(stack, series, strict=True):
            h = plot_h * value / y_max
            if h > 0:
                base -= h
                parts.append(f'<rect class="{s.css}" x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}"/>')
        # an invisible full-height target so thin bars still show their tooltip
        parts.append(f'<rect class="hit" x="{left + slot * i:.1f}" y="{top}" width="{slot:.1f}" height="{plot_h}"/>')
        parts.append("</g>")
        if i % every == 0:
            mid = x + bar_w / 2
            text = escape(label)
            parts.append(f'<text class="tick" x="{mid:.1f}" y="{height - 8}" text-anchor="middle">{text}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text above is escaped


def legend(series: Sequence[Series]) -> SafeString:
    items = "".join(f'<li><span class="swatch {s.css}"></span>{escape(s.name)}</li>' for s in series)
    return mark_safe(f'<ul class="legend" role="list">{items}</ul>')  # noqa: S308 - names escaped
