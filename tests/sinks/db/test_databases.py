"""Sink tables on the real PostgreSQL and MariaDB and on a SQLite file.

Values go in as the lake's Arrow values and must come back equal; the merge rule is
applied by the database (a lower rank never replaces a row; a batch applied twice changes
nothing); rows and positions commit together; refused values come back as rejected rows
while the rest of the batch lands; the table follows compatible schema changes.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from onepipe.schemas.avro_schema import AvroSchema, parse_schema
from onepipe.sinks.db import Database, SinkRow, SinkSchemaError, SinkTable, columns_of, redact
from onepipe.sinks.db import open_database as open_db
from onepipe.sinks.formats.raw import typed_schema
from tests.fixtures.databases import dsn_for
from tests.fixtures.services import unique

FIELDS: list[dict[str, Any]] = [
    {"name": "id", "type": "string"},
    {"name": "n", "type": "int"},
    {"name": "big", "type": "long"},
    {"name": "ok", "type": "boolean"},
    {"name": "ratio", "type": "double"},
    {"name": "small", "type": "float"},
    {"name": "blob", "type": "bytes"},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12,
                               "scale": 3}},
    {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attrs", "type": {"type": "map", "values": "long"}},
    {"name": "place", "type": ["null", {"type": "record", "name": "Place", "fields": [
        {"name": "city", "type": "string"}, {"name": "code", "type": "bytes"}]}]},
    {"name": "note", "type": ["null", "string"]},
]
SCHEMA = parse_schema({"type": "record", "name": "Row", "fields": FIELDS})


def value(i: int) -> dict[str, Any]:
    return {
        "id": f"k{i}", "n": -i, "big": 2**40 + i, "ok": i % 2 == 0, "ratio": i / 7,
        "small": 1.5, "blob": bytes([i, 0, 255]), "kind": "AB"[i % 2],
        "day": dt.date(2026, 11, 20) + dt.timedelta(days=i),
        "at": dt.datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=dt.UTC) + dt.timedelta(hours=i),
        "price": Decimal(f"{i}.125"), "ref": str(uuid.UUID(int=i)), "tags": ["x", f"t{i}"],
        "attrs": [("a", i), ("b", -1)], "place": {"city": "Zürich", "code": b"\x01"},
        "note": None if i % 3 == 0 else f"n{i}",
    }


def table_for(db: Database, schema: AvroSchema = SCHEMA, name: str | None = None) -> SinkTable:
    arrow = typed_schema(schema)
    return SinkTable(db, name or unique("rows").replace("-", "_"),
                     columns_of(arrow, schema.json["fields"], ("id",)))


def row(table: SinkTable, record: dict[str, Any], rank: bytes, i: int = 0) -> SinkRow:
    params = tuple(c.to_db(table.db.dialect)(record.get(c.name)) for c in table.columns)
    return SinkRow((record["id"],), (*params, rank, 1_764_151_200_000 + i), rank, (0, i))


def read_back(table: SinkTable, rows: list[tuple[Any, ...]]) -> dict[str, dict[str, Any]]:
    out = {}
    for fetched in rows:
        values = {c.name: c.from_db(table.db.dialect)(v)
                  for c, v in zip(table.columns, fetched, strict=False)}
        out[values["id"]] = values
    return out


@pytest.fixture
async def db(kind: str, tmp_path: Path) -> AsyncIterator[Database]:
    database = open_db(kind, dsn_for(kind, tmp_path))  # type: ignore[arg-type]
    await database.start()
    try:
        yield database
    finally:
        await database.stop()


async def test_values_come_back_as_they_went_in(db: Database) -> None:
    table = table_for(db)
    assert await table.prepare() == [f"created table {table.table}"]
    records = [value(i) for i in range(5)]
    assert await table.write([row(table, r, b"\x01", i) for i, r in enumerate(records)],
                             "s", "t", {0: 5}) == []
    got = read_back(table, await table.read())
    # What the lake holds for the same records, as Arrow values.
    arrow = pa.Table.from_pylist(records, typed_schema(SCHEMA))
    assert got == {r["id"]: r for r in arrow.to_pylist()}
    assert await table.positions("s", "t") == {0: 5}


async def test_the_merge_rule_is_applied_by_the_database(db: Database) -> None:
    table = table_for(db)
    await table.prepare()
    v1, v2 = {**value(1), "note": "v1"}, {**value(1), "note": "v2"}
    await table.write([row(table, v2, b"\x02")], "s", "t", {0: 1})
    await table.write([row(table, v1, b"\x01")], "s", "t", {0: 2})  # older: ignored
    assert read_back(table, await table.read())["k1"]["note"] == "v2"
    v3 = {**value(1), "note": "v3"}
    batch = [row(table, v3, b"\x03"), row(table, v1, b"\x01")]
    for _ in range(2):  # applied twice: the same table
        await table.write(batch, "s", "t", {0: 3})
        assert read_back(table, await table.read())["k1"]["note"] == "v3"
    assert len(await table.read()) == 1
    assert await table.positions("s", "t") == {0: 3}


async def test_positions_are_per_sink_and_topic(db: Database) -> None:
    table = table_for(db)
    await table.prepare()
    await table.write([], "a", "t", {0: 10, 1: 4})
    await table.write([], "b", "t", {0: 2})
    assert await table.positions("a", "t") == {0: 10, 1: 4}
    assert await table.positions("b", "t") == {0: 2}
    assert await table.positions("a", "other") == {}


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
async def test_a_value_the_database_refuses_is_rejected_and_the_rest_lands(
        db: Database) -> None:
    table = table_for(db)
    await table.prepare()
    good = [value(i) for i in range(3)]
    # PostgreSQL text cannot hold NUL; a MySQL key column holds 3,072 bytes.
    bad = ({**value(9), "note": "a\x00b"} if db.dialect == "postgres"
           else {**value(9), "id": "k" * 4000})
    rows = [row(table, r, b"\x01", i) for i, r in enumerate([*good, bad])]
    rejected = await table.write(rows, "s", "t", {0: 4})
    assert [r.row.key for r in rejected] == [(bad["id"],)]
    assert rejected[0].reason
    assert sorted(read_back(table, await table.read())) == ["k0", "k1", "k2"]
    assert await table.positions("s", "t") == {0: 4}


async def test_the_table_follows_compatible_schema_changes(db: Database) -> None:
    name = unique("evolve").replace("-", "_")
    v1 = parse_schema({"type": "record", "name": "E", "fields": [
        {"name": "id", "type": "string"}, {"name": "n", "type": "int"},
        {"name": "x", "type": "float"}]})
    v2 = parse_schema({"type": "record", "name": "E", "fields": [
        {"name": "id", "type": "string"}, {"name": "n", "type": "long"},
        {"name": "x", "type": "double"}, {"name": "extra", "type": ["null", "string"],
                                          "default": None}]})
    await table_for(db, v1, name).prepare()
    evolved = table_for(db, v2, name)
    changes = await evolved.prepare()
    assert "added column extra" in " ".join(changes)
    if db.dialect != "sqlite":  # SQLite's INTEGER and REAL already hold both
        assert any(c.startswith("widened column n") for c in changes)
    if db.dialect == "postgres":  # MySQL keeps every float as DOUBLE already
        assert any(c.startswith("widened column x") for c in changes)
    await evolved.write([SinkRow(("k",), ("k", 2**40, 0.1, "e", b"\x01", 0), b"\x01", (0, 0))],
                        "s", "t", {0: 1})
    assert len(await evolved.read()) == 1
    assert await table_for(db, v2, name).prepare() == []  # nothing left to change
    v3 = parse_schema({"type": "record", "name": "E", "fields": [
        {"name": "id", "type": "string"}, {"name": "n", "type": "string"}]})
    with pytest.raises(SinkSchemaError, match="column 'n'"):
        await table_for(db, v3, name).prepare()


async def test_keys_are_exact_and_may_span_several_text_columns(db: Database) -> None:
    schema = parse_schema({"type": "record", "name": "K", "fields": [
        {"name": "a", "type": "string"}, {"name": "b", "type": "string"},
        {"name": "n", "type": "long"}, {"name": "v", "type": "string"}]})
    table = SinkTable(db, unique("keys").replace("-", "_"),
                      columns_of(typed_schema(schema), schema.json["fields"], ("a", "b", "n")))
    await table.prepare()  # MySQL: the three key columns share InnoDB's key index
    rows = [SinkRow((a, "x", 1), (a, "x", 1, f"v-{a!r}", b"\x01", 0), b"\x01", (0, i))
            for i, a in enumerate(["a", "a ", "A", "ä"])]  # four keys, none equal
    assert await table.write(rows, "s", "t", {0: 4}) == []
    got = sorted(c.from_db(db.dialect)(r[0]) for r in await table.read()
                 for c in table.columns[:1])
    assert got == sorted(["a", "a ", "A", "ä"])


async def test_floats_keep_their_value_or_are_refused(db: Database) -> None:
    schema = parse_schema({"type": "record", "name": "F", "fields": [
        {"name": "id", "type": "string"}, {"name": "f", "type": "float"},
        {"name": "d", "type": "double"}]})
    table = table_for(db, schema)
    await table.prepare()
    values = [{"id": "k1", "f": 1.2345678, "d": 1 / 3},
              {"id": "k2", "f": float("nan"), "d": float("-inf")}]
    rows = [row(table, v, b"\x01", i) for i, v in enumerate(values)]
    rejected = await table.write(rows, "s", "t", {0: 2})
    got = read_back(table, await table.read())
    as_float32 = pa.array([1.2345678], pa.float32()).to_pylist()[0]
    assert got["k1"]["f"] == as_float32 or got["k1"]["f"] == 1.2345678
    assert got["k1"]["d"] == 1 / 3
    if db.dialect == "mysql":  # the driver cannot send NaN or infinity
        assert [r.row.key for r in rejected] == [("k2",)]
    else:
        assert rejected == [] and str(got["k2"]["f"]) == "nan" and got["k2"]["d"] == -math.inf


async def test_a_column_added_later_holds_the_field_default_for_older_rows(
        db: Database) -> None:
    name = unique("defaults").replace("-", "_")
    v1 = parse_schema({"type": "record", "name": "D", "fields": [
        {"name": "id", "type": "string"}]})
    v2 = parse_schema({"type": "record", "name": "D", "fields": [
        {"name": "id", "type": "string"}, {"name": "n", "type": "long", "default": 7},
        {"name": "s", "type": "string", "default": "it's \\ here"}]})
    old = table_for(db, v1, name)
    await old.prepare()
    await old.write([SinkRow(("k",), ("k", b"\x01", 0), b"\x01", (0, 0))], "s", "t", {0: 1})
    new = table_for(db, v2, name)
    await new.prepare()
    assert read_back(new, await new.read())["k"] == {"id": "k", "n": 7, "s": "it's \\ here"}


async def test_positions_never_go_backwards_and_names_are_checked(db: Database) -> None:
    table = table_for(db)
    await table.prepare()
    await table.write([], "s", "t", {0: 10})
    await table.write([], "s", "t", {0: 4})  # a former owner, late
    assert await table.positions("s", "t") == {0: 10}
    clash = parse_schema({"type": "record", "name": "C", "fields": [
        {"name": "id", "type": "string"}, {"name": "_onepipe_rank", "type": "string"}]})
    with pytest.raises(SinkSchemaError, match="keeps for itself"):
        await table_for(db, clash).prepare()


def test_dsns_are_shown_without_passwords() -> None:
    assert redact("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("mysql://h/db?user=u&password=secret&x=1") == \
        "mysql://h/db?user=u&password=***&x=1"
