"""The result table every bench prints: one :class:`Row` a figure, :func:`format_table`.

Apart from bench/common.py so that bench/summary.py, which bench/common.py records to,
prints the same table without importing it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Row", "format_table"]


@dataclass
class Row:
    """One line of the result table. ``ok`` None means "no target" (informational)."""

    name: str
    value: str
    target: str = ""
    ok: bool | None = None
    note: str = ""

    @property
    def status(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "MISS")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "target": self.target,
                "status": self.status, "note": self.note}


def format_table(rows: Sequence[Row], markdown: bool = False) -> str:
    """A compact fixed-width table (or a Markdown table) of rows."""
    head = ("figure", "value", "target", "status", "note")
    cells = [(r.name, r.value, r.target, r.status, r.note) for r in rows]
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(out)
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()
    out = [line, "-" * len(line)]
    out += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip()
            for cell in cells]
    return "\n".join(out)
