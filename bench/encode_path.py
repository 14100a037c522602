"""Encode-path micro-benchmark: CPU µs per record of each stage of the produce endpoint.

    .venv/bin/python bench/encode_path.py [--records 500] [--requests 20] [--repeats 7]
                                          [--save FILE] [--against FILE] [--json]

No broker, no worker: the stages ``POST /topics/{topic}/records`` runs per request, in this
process, on ``--requests`` bodies of ``--records`` records each (500: what the produce
bench sends), for two schemas: the catalog's ``widgets`` (records from bench/produce.py's
``make_record``, ~105 B of Avro) and ``orders``, a wider schema written here (22 fields:
optional fields, a nested record, a map, decimals, timestamps, a uuid, an enum), since
the catalog holds none wider than ``widgets``.

Stages, each timed with ``time.process_time`` (CPU, so other processes on the machine
slow it less than wall time would) and reported as the best of ``--repeats`` runs:

- ``json_parse``     ``parse_json_body`` on the orjson bytes of ``{"records": [...]}``
- ``json_to_datum``  ``compile_converter(schema).convert_many(records)``
- ``key_encode``     the unique key's bytes (``KeyEncoder.encode_many``)
- ``value_encode``   the Confluent-framed Avro value
- ``avro_encode``    ``TopicWriter._encode``: key + value, as the endpoint runs them
- ``batch_path``     validation and encoding in one, column by column
  (onepipe.schemas.avro_batch_write), what ``TopicWriter.encode`` runs instead of the two
  stages above for a request of at least ``MIN_RECORDS`` records of a schema it takes
  (``widgets``; not ``orders``, whose nested record and map it does not take)
- ``endpoint``       ``parse_json_body`` + ``TopicWriter.encode`` (everything but HTTP and
  the producer)
- ``ref_fastavro``   key + value the way the endpoint did before issue 15 (a fresh
  BytesIO and ``fastavro.schemaless_writer`` per record): the fixed reference

Every value and key is checked byte for byte against ``fastavro.schemaless_writer``
before anything is timed. ``--save`` writes the figures as JSON; ``--against`` prints a
saved run beside this one (before/after).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import fastavro  # noqa: E402
import orjson  # noqa: E402

from bench.produce import make_record  # noqa: E402
from onepipe.app.web.json_body import parse_json_body  # noqa: E402
from onepipe.schemas.avro_batch_write import column_writer  # noqa: E402
from onepipe.schemas.avro_schema import AvroSchema, parse_schema  # noqa: E402
from onepipe.schemas.catalog_folder import load_catalog  # noqa: E402
from onepipe.schemas.codec import KeyEncoder, frame  # noqa: E402
from onepipe.schemas.validation import compile_converter  # noqa: E402
from onepipe.sinks.publish.publisher import TopicWriter  # noqa: E402

SCHEMA_ID = 7

ORDERS: dict[str, Any] = {
    "type": "record", "name": "Order", "namespace": "bench.orders", "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "version", "type": "long"},
        {"name": "customer_id", "type": "string"},
        {"name": "status", "type": {"type": "enum", "name": "Status",
                                    "symbols": ["NEW", "PAID", "SHIPPED", "CANCELLED"]}},
        {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "updated_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "ship_by", "type": ["null", {"type": "int", "logicalType": "date"}],
         "default": None},
        {"name": "total", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12,
                                   "scale": 2}},
        {"name": "currency", "type": "string", "default": "EUR"},
        {"name": "items", "type": "int"},
        {"name": "weight_kg", "type": "double"},
        {"name": "discount", "type": ["null", "float"], "default": None},
        {"name": "gift", "type": "boolean", "default": False},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "coupon", "type": ["null", "string"], "default": None},
        {"name": "request_id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
            {"name": "street", "type": "string"}, {"name": "city", "type": "string"},
            {"name": "zip", "type": "string"}, {"name": "country", "type": "string"}]}},
        {"name": "billing", "type": ["null", "Address"], "default": None},
        {"name": "lines", "type": {"type": "array", "items": "long"}, "default": []},
        {"name": "attrs", "type": {"type": "map", "values": "string"}, "default": {}},
        {"name": "channel", "type": "string"},
        {"name": "score", "type": "double"},
    ]}
ORDERS_KEY = ["order_id"]


def order_record(i: int) -> dict[str, Any]:
    """A realistic order: about half the optional fields set."""
    address = {"street": f"{i % 300} Long Street", "city": "Lyon", "zip": f"{69000 + i % 9}",
               "country": "FR"}
    return {
        "order_id": f"order-{i:012d}", "version": 1 + i % 3, "customer_id": f"c-{i % 9973}",
        "status": ("NEW", "PAID", "SHIPPED", "CANCELLED")[i % 4],
        "created_at": 1_795_000_000_000 + i, "updated_at": 1_795_000_000_000_000 + i * 1000,
        "ship_by": None if i % 2 else 20_500 + i % 30, "total": f"{i % 100_000}.{i % 100:02d}",
        "items": 1 + i % 9, "weight_kg": 0.25 * (1 + i % 40),
        "discount": None if i % 3 else 0.1, "gift": not i % 7,
        "note": None if i % 5 else "leave at the door", "request_id":
        f"{i:08x}-1234-4abc-8def-{i * 7919 % 16**12:012x}", "address": address,
        "billing": None if i % 2 else {**address, "street": "1 Bank Road"},
        "lines": [i, i + 1, i + 2][: 1 + i % 3], "attrs": {"src": "web", "ab": f"v{i % 2}"},
        "channel": "web", "score": i / 7,
    }


class Case:
    """One schema and its request bodies."""

    def __init__(self, name: str, schema: AvroSchema, key: list[str],
                 make: Callable[[int], dict[str, Any]], records: int, requests: int) -> None:
        self.name, self.schema, self.key = name, schema, key
        self.writer = TopicWriter(name, SCHEMA_ID, 1, schema, compile_converter(schema),
                                  KeyEncoder(schema, key),
                                  columns=column_writer(schema, SCHEMA_ID, key))
        self.bodies = [orjson.dumps({"records": [make(r * records + i) for i in range(records)]})
                       for r in range(requests)]
        self.requests = [orjson.loads(b)["records"] for b in self.bodies]
        self.datums = [self.writer.converter.convert_many(rs)[0] for rs in self.requests]
        self.n = records * requests


def _reference(case: Case) -> list[list[tuple[bytes, bytes]]]:
    """(key, value) as fastavro.schemaless_writer writes them, one BytesIO per record."""
    keys = fastavro.parse_schema(case.writer.key_encoder._parsed)  # type: ignore[union-attr]
    parsed, fields = case.schema.parsed, case.key
    out = []
    for chunk in case.datums:
        encoded = []
        for d in chunk:
            kbuf, vbuf = io.BytesIO(), io.BytesIO()
            fastavro.schemaless_writer(kbuf, keys, {k: d[k] for k in fields})
            fastavro.schemaless_writer(vbuf, parsed, d)
            encoded.append((kbuf.getvalue(), frame(SCHEMA_ID, vbuf.getvalue())))
        out.append(encoded)
    return out


def stages(case: Case) -> dict[str, Callable[[], object]]:
    """Each stage as a function over every request of the case."""
    w, bodies, requests, datums = case.writer, case.bodies, case.requests, case.datums
    keys = w.key_encoder
    assert keys is not None
    body_only = TopicWriter(w.topic, w.schema_id, w.version, w.schema, w.converter, None)
    columns = w.columns
    batch = {"batch_path": lambda: [columns.encode(rs) for rs in requests]} if (
        columns is not None and columns.encode(requests[0]) is not None) else {}
    return {
        "json_parse": lambda: [parse_json_body(b) for b in bodies],
        "json_to_datum": lambda: [w.converter.convert_many(rs) for rs in requests],
        "key_encode": lambda: [keys.encode_many(ds) for ds in datums],
        "value_encode": lambda: [body_only._encode(ds, 0) for ds in datums],
        "avro_encode": lambda: [w._encode(ds, 0) for ds in datums],
        **batch,
        "endpoint": lambda: [w.encode(parse_json_body(b)["records"]) for b in bodies],
        "ref_fastavro": lambda: _reference(case),
    }


def check(case: Case) -> None:
    """Refuse to time anything that is not byte-identical to fastavro's own encoding."""
    expected = _reference(case)
    got = [case.writer._encode(ds, 0) for ds in case.datums]
    if got != expected:
        raise SystemExit(f"{case.name}: encoding differs from fastavro.schemaless_writer")
    if [case.writer.encode(rs) for rs in case.requests] != expected:
        raise SystemExit(f"{case.name}: TopicWriter.encode differs from fastavro")
    columns = case.writer.columns
    if columns is not None and [columns.encode(rs) for rs in case.requests] not in (
            expected, [None] * len(case.requests)):
        raise SystemExit(f"{case.name}: the batch path differs from fastavro")


def best_us(fn: Callable[[], object], n: int, repeats: int) -> float:
    """Best CPU µs per record over ``repeats`` runs (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return 1e6 * min(times) / n


def run(cases: Sequence[Case], repeats: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for case in cases:
        check(case)
        results[case.name] = {stage: best_us(fn, case.n, repeats)
                              for stage, fn in stages(case).items()}
    return results


def table(now: dict[str, dict[str, float]], before: dict[str, dict[str, float]] | None) -> str:
    lines = []
    for name, figures in now.items():
        old = (before or {}).get(name, {})
        head = f"{name:<8} {'stage':<14}" + (f"{'before':>9} {'after':>9} {'change':>8}" if old
                                             else f"{'µs/rec':>9}")
        lines.append(head)
        for stage, us in figures.items():
            if stage in old:
                change = f"{100 * (us / old[stage] - 1):+.0f}%"
                lines.append(f"{'':<8} {stage:<14}{old[stage]:>9.2f} {us:>9.2f} {change:>8}")
            else:
                lines.append(f"{'':<8} {stage:<14}{us:>9.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=500, help="records per request")
    parser.add_argument("--requests", type=int, default=20, help="requests per run")
    parser.add_argument("--repeats", type=int, default=7, help="runs per stage; best counts")
    parser.add_argument("--save", type=Path, help="write the figures here as JSON")
    parser.add_argument("--against", type=Path, help="a --save file to show as 'before'")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    widgets = next(e for e in load_catalog(ROOT / "catalog") if e.topic == "widgets")
    cases = [
        Case("widgets", parse_schema(widgets.schema), list(widgets.entry["key"]),
             make_record, args.records, args.requests),
        Case("orders", parse_schema(ORDERS), ORDERS_KEY, order_record, args.records,
             args.requests),
    ]
    results = run(cases, args.repeats)
    if args.save:
        args.save.write_text(json.dumps(results, indent=1) + "\n")
    before = json.loads(args.against.read_text()) if args.against else None
    print(json.dumps(results, indent=1) if args.json else table(results, before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
