"""Plain-text tables and a DET curve picture for the evaluation's report (no plotting library)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable, Iterable, Sequence


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-markdown table (readable as plain text too)."""
    rows = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def grid(items: Iterable[object], row: Callable[[object], str], col: Callable[[object], str],
         value: Callable[[list[object]], str], rows_order: Sequence[str] | None = None,
         cols_order: Sequence[str] | None = None, corner: str = "") -> str:
    """A table of ``value(items in cell)`` by ``row(item)`` x ``col(item)``, with an "all" row and column."""
    cells: dict[tuple[str, str], list[object]] = defaultdict(list)
    for item in items:
        r, c = row(item), col(item)
        for key in ((r, c), (r, "all"), ("all", c), ("all", "all")):
            cells[key].append(item)
    rows = list(rows_order or sorted({r for r, _ in cells} - {"all"})) + ["all"]
    cols = list(cols_order or sorted({c for _, c in cells} - {"all"})) + ["all"]
    return table([corner, *cols], [[r, *(value(cells[(r, c)]) if cells.get((r, c)) else "-" for c in cols)]
                                   for r in rows])


def det_svg(curves: dict[str, list[tuple[float, float]]], title: str) -> str:
    """DET curves (false accepts per hour on x, log; FRR on y) as a small standalone SVG."""
    w, h, left, bottom = 640, 400, 60, 40
    x_lo, x_hi = math.log10(0.05), math.log10(200.0)
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]

    def xy(fa: float, frr: float) -> tuple[float, float]:
        fx = (math.log10(max(fa, 0.05)) - x_lo) / (x_hi - x_lo)
        return left + fx * (w - left - 10), (h - bottom) - frr * (h - bottom - 20)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
             f'<rect width="{w}" height="{h}" fill="white"/><text x="{left}" y="14" font-size="13">{title}</text>']
    for fa in (0.1, 0.5, 1, 5, 10, 50, 100):
        x, _ = xy(fa, 0)
        parts.append(f'<line x1="{x:.0f}" y1="20" x2="{x:.0f}" y2="{h - bottom}" stroke="#ddd"/>'
                     f'<text x="{x:.0f}" y="{h - bottom + 14}" text-anchor="middle">{fa:g}</text>')
    for frr in (0, 0.05, 0.25, 0.5, 0.75, 1):
        _, y = xy(1, frr)
        parts.append(f'<line x1="{left}" y1="{y:.0f}" x2="{w - 10}" y2="{y:.0f}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{y + 4:.0f}" text-anchor="end">{frr:g}</text>')
    parts.append(f'<text x="{w / 2:.0f}" y="{h - 6}" text-anchor="middle">false accepts per hour (log; 0 drawn at 0.05)</text>'
                 f'<text x="14" y="{h / 2:.0f}" transform="rotate(-90 14 {h / 2:.0f})" text-anchor="middle">FRR</text>')
    for i, (name, points) in enumerate(curves.items()):
        color = colors[i % len(colors)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(fa, frr) for fa, frr in sorted(points)))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{path}"/>'
                     f'<text x="{w - 180}" y="{34 + 14 * i}" fill="{color}">{name}</text>')
    return "\n".join(parts + ["</svg>"])
