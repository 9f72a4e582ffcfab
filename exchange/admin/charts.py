"""Small server-rendered SVG charts for the console's dashboard: no JavaScript, no build step.

Every label is escaped; the functions return safe markup to put straight into a template.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#417690", "#e07b39", "#5b9a45", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
FONT = 'font-family="-apple-system, Segoe UI, Roboto, sans-serif" font-size="11"'


def _nice_max(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if factor * step >= value:
                return max(1, factor * step)
        step *= 10


def _legend(names: Sequence[str], *, x: int, y: int) -> list[str]:
    parts, offset = [], 0
    for index, name in enumerate(names):
        color = PALETTE[index % len(PALETTE)]
        parts.append(f'<rect x="{x + offset}" y="{y - 9}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{x + offset + 14}" y="{y}" {FONT}>{escape(name)}</text>')
        offset += 24 + 7 * len(name)
    return parts


def stacked_columns(
    labels: Sequence[str],
    series: dict[str, Sequence[int]],
    *,
    title: str,
    width: int = 640,
    height: int = 240,
    label_every: int = 1,
) -> SafeString:
    """Columns per label, each stacked from the series in order (a legend names them)."""
    left, right, top, bottom = 40, 10, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    peak = _nice_max(max(totals, default=0))
    slot = plot_w / max(len(labels), 1)
    bar_w = max(2.0, slot * 0.7)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
        *_legend(list(series), x=left, y=14),
    ]
    for tick in sorted({0, peak // 2, peak} if peak % 2 == 0 else {0, peak}):
        fraction = tick / peak
        y = top + plot_h * (1 - fraction)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" {FONT} fill="#666">{tick}</text>')
    for i, label in enumerate(labels):
        x = left + slot * i + (slot - bar_w) / 2
        base = top + plot_h
        for s, (name, values) in enumerate(series.items()):
            value = values[i]
            if not value:
                continue
            h = plot_h * value / peak
            base -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(label)} {escape(name)}: {value}</title></rect>'
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 14}" text-anchor="middle" {FONT} fill="#444">'
                f"{escape(label)}</text>"
            )
    if not any(totals):
        parts.append(f'<text x="{width / 2}" y="{top + plot_h / 2}" text-anchor="middle" {FONT}>no data</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated label is escaped above


def horizontal_bars(items: Sequence[tuple[str, int]], *, title: str, width: int = 640, color: str = PALETTE[0]):
    """One bar per (label, value), longest first as given."""
    row, left, right, top = 22, 150, 50, 6
    height = top * 2 + row * max(len(items), 1)
    peak = max((value for _label, value in items), default=0) or 1
    plot_w = width - left - right
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, value) in enumerate(items):
        y = top + row * i
        w = plot_w * value / peak
        parts.append(
            f'<text x="{left - 6}" y="{y + 15}" text-anchor="end" {FONT} fill="#333">{escape(label[:24])}</text>'
            f'<rect x="{left}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" fill="{color}">'
            f"<title>{escape(label)}: {value}</title></rect>"
            f'<text x="{left + w + 4:.1f}" y="{y + 15}" {FONT} fill="#333">{value}</text>'
        )
    if not items:
        parts.append(f'<text x="{width / 2}" y="{top + 15}" text-anchor="middle" {FONT}>no data</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated label is escaped above


def columns_against_levels(
    labels: Sequence[str],
    values: Sequence[int],
    levels: Sequence[tuple[str, float]],
    *,
    title: str,
    width: int = 640,
    height: int = 180,
    label_every: int = 6,
) -> SafeString:
    """One column per label, with horizontal lines at named levels (a baseline, a threshold)."""
    left, right, top, bottom = 40, 10, 28, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_max(int(max([*values, *(value for _name, value in levels)], default=0)) + 1)
    slot = plot_w / max(len(labels), 1)
    bar_w = max(2.0, slot * 0.7)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
        *_legend(["distinct subjects", *(name for name, _value in levels)], x=left, y=14),
    ]
    for tick in (0, peak):
        y = top + plot_h * (1 - tick / peak)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" {FONT} fill="#666">{tick}</text>')
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = left + slot * i + (slot - bar_w) / 2
        h = plot_h * value / peak
        parts.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{PALETTE[0]}">'
            f"<title>{escape(label)}: {value}</title></rect>"
        )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 14}" text-anchor="middle" {FONT} fill="#444">'
                f"{escape(label)}</text>"
            )
    for n, (name, value) in enumerate(levels, start=1):
        y = top + plot_h * (1 - value / peak)
        dash = ' stroke-dasharray="6 4"' if n > 1 else ""
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{PALETTE[n % len(PALETTE)]}" '
            f'stroke-width="2"{dash}><title>{escape(name)}: {value:g}</title></line>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated label is escaped above
