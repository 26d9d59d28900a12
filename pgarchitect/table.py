"""Plain-text tables for terminal reports."""

from __future__ import annotations

from collections.abc import Sequence


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]],
                 align_right: Sequence[bool] | None = None) -> str:
    """Columns padded to their widest cell; numbers right-aligned by default."""
    cells = [[str(c) for c in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if align_right is None:
        align_right = [
            bool(rows) and all(isinstance(r[i], int | float) for r in rows)
            for i in range(len(headers))
        ]
    lines = []
    for n, row in enumerate(cells):
        parts = [c.rjust(w) if right else c.ljust(w)
                 for c, w, right in zip(row, widths, align_right, strict=True)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
