"""Tables: plain text for the terminal (``render``), markdown lines for reports (``markdown``)."""

from __future__ import annotations

from collections.abc import Sequence


def render(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A markdown table, one string per line (no trailing newline); a pipe or a line break in
    a cell (an error message, say) cannot break its row."""
    def cell(c: object) -> str:
        return str(c).replace("|", "\\|").replace("\n", " ")

    return ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(cell(c) for c in r) + " |" for r in rows)]
