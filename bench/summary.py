"""One table of every bench's headline figures, printed at the end of ``make bench``.

    .venv/bin/python bench/summary.py FILE

Each bench prints its own report, and ``make bench`` runs a dozen of them: the figures
issue 15 is judged by (both ceilings and every ratio) were spread over hundreds of lines.
So a bench also hands each headline figure to :func:`record`. When the environment names
a file in :data:`ENV` (``make bench`` does), the figure is appended to it as one JSON
line; without it, :func:`record` does nothing, so a bench run by hand prints only its own
report. ``python bench/summary.py FILE [BENCH ...]`` prints the file as one table: which
bench, the figure, its value, the target and PASS/MISS, and a note (the ceilings it was
divided by). Each BENCH named (``make bench`` names every script it ran) that recorded
nothing - it failed before its report - gets a row saying so, so the table cannot look
complete when it is not.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

from bench.table import Row, format_table  # noqa: E402

#: The environment variable naming the file figures are appended to.
ENV = "ONEPIPE_BENCH_SUMMARY"


def record(figure: str, value: str, *, target: str = "", ok: bool | None = None,
           note: str = "", bench: str | None = None) -> None:
    """Append one figure to the summary file, if :data:`ENV` names one.

    ``ok`` None means no target (a ceiling, an informational figure). ``bench`` defaults
    to the running script's name.
    """
    path = os.environ.get(ENV)
    if not path:
        return
    line = {"bench": bench or Path(sys.argv[0]).stem, "figure": figure, "value": value,
            "target": target, "ok": ok, "note": note}
    with Path(path).open("a", encoding="utf-8") as out:  # one line a write: no interleaving
        out.write(json.dumps(line) + "\n")


def main() -> None:
    if len(sys.argv) < 2:  # noqa: PLR2004 - the script and its file
        raise SystemExit(f"usage: {Path(sys.argv[0]).name} FILE [BENCH ...] (FILE: what "
                         f"{ENV} named; BENCH: the scripts that ran)")
    path, expected = Path(sys.argv[1]), sys.argv[2:]
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    figures = [json.loads(line) for line in lines if line.strip()]
    rows = [Row(f"{f['bench']}: {f['figure']}", f["value"], f["target"], f["ok"], f["note"])
            for f in figures]
    recorded = {f["bench"] for f in figures}
    silent = [name for name in expected if name not in recorded]
    rows += [Row(f"{name}: (no figures)", "-", note="it failed before its report: see its "
                 "output above") for name in silent]
    if not rows:
        print(f"\nno bench recorded a figure in {path}")
        return
    missed = sum(1 for r in rows if r.ok is False)
    print(f"\nmake bench: every headline figure ({len(figures)}; {missed} missed a target; "
          f"{len(silent)} bench(es) recorded none)\n")
    print(format_table(rows))


if __name__ == "__main__":
    main()
