"""Typed records: the cost of ``record_converter`` per record (pure CPU, no broker).

    .venv/bin/python bench/typed_records.py [--records N]

Decodes one ``widgets`` record (catalog/widgets.avsc) with fastavro as a batch agent
does, then times three converters over a list of N copies, best of five runs:

1. generated - the class ``generate_module`` writes (frozen, slotted, kw_only): the
               converter sets the slots directly. Target: <= 1 µs a record.
2. init      - the same fields in a frozen dataclass with a ``__post_init__``: the
               converter must go through ``__init__`` (object.__setattr__ per field).
3. baseline  - ``dict(record)``: the floor of touching a record at all.

Exit status 1 when the generated class misses its target.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import io
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro

from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.typed import converter_many, generate_module

REPO = Path(__file__).resolve().parent.parent
TARGET_US = 1.0


@dataclass(frozen=True)
class WidgetInit:
    widget_id: str
    version: int
    name: str
    price: float
    colour: str
    updated_at: datetime.datetime
    tags: list[str]

    def __post_init__(self) -> None:
        pass


def _best(run: Callable[[], Any], records: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best / records * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    schema = parse_schema((REPO / "catalog" / "widgets.avsc").read_text())
    record = {"widget_id": "w-1", "version": 3, "name": "sprocket", "price": 9.5,
              "colour": "RED", "updated_at": 1_764_151_200_000, "tags": ["a", "b"]}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema.parsed, record)
    buf.seek(0)
    decoded = fastavro.schemaless_reader(buf, schema.parsed, None)
    assert isinstance(decoded, dict)
    batch = [decoded] * args.records
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench_widgets.py"
        path.write_text(generate_module("widgets", schema))
        spec = importlib.util.spec_from_file_location("bench_widgets", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_widgets"] = module
        spec.loader.exec_module(module)
    generated = converter_many(module.Widget, schema)
    init = converter_many(WidgetInit, schema)
    figures = {
        "generated": _best(lambda: generated(batch), args.records),
        "init": _best(lambda: init(batch), args.records),
        "baseline": _best(lambda: [dict(r) for r in batch], args.records),
    }
    for name, micros in figures.items():
        print(f"{name:10} {micros:6.3f} µs/record")
    ok = figures["generated"] <= TARGET_US
    print(f"generated class: {'ok' if ok else 'MISS'} (target <= {TARGET_US} µs/record)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
