"""The clean table's shape: Arrow columns to an Iceberg schema, its partitioning and sort
order, schema evolution, and the Parquet field ids data files are written with.

Contract:
- Columns come from the compactor's merge output (Arrow, as DuckDB writes it: the raw
  lake's ``_kafka_*`` columns and the typed columns of the registry's schema, onepipe.sinks.
  formats.arrow_types), every one **optional** (an Avro field added later is null in
  older rows), plus the day column (``date``). pyiceberg maps the Arrow types: string,
  long/int, double/float, boolean, binary, decimal, date, time, ``timestamptz`` (µs),
  list, map and struct, each with its own field id.
- **Partitioned by the day** of ``partition_time``: the spec is ``day(<day column>)``, a
  ``date`` column the compactor fills with *the* day rule (onepipe.schemas.partition_day:
  UTC, clamped to 1970-01-01..9999-12-31, the same day every other system uses), so a
  partition is exactly one of verify's days. (A transform over ``partition_time`` itself
  could not express the clamping, nor a ``long`` of epoch millis.)
- **Sorted** by the unique key (identity, ascending, nulls last - DuckDB's order):
  written that way by the compactor and declared as the table's sort order for engines.
- **Evolution** (:func:`evolve`) is ``union_by_name``: new columns get new field ids,
  existing columns keep theirs (and may widen, int to long), none is dropped.
- :func:`field_ids` gives the ids as JSON-safe data (they travel in day tasks); the
  DuckDB ``FIELD_IDS`` option for the columns a file actually has is
  :func:`field_ids_sql`, so every data file carries Iceberg field ids and any engine
  reads it without a name mapping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException, TableAlreadyExistsError
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import ListType, MapType, NestedField, StructType

from onepipe.sinks.lake.iceberg.catalog import NAMESPACE, CleanCatalog, catalog_errors

__all__ = ["DAY_COLUMN", "DAY_PARTITION", "TABLE_PROPERTIES", "arrow_optional",
           "ensure_table", "evolve", "field_ids", "field_ids_sql"]

#: The day column of every clean table: the clamped UTC day of ``partition_time``. The
#: reserved ``_kafka_`` prefix means no Avro field can have this name.
DAY_COLUMN = "_kafka_clean_day"
#: Name of the partition field (the day of the day column).
DAY_PARTITION = "day"
#: Properties of every clean table, and why:
TABLE_PROPERTIES = {
    # pyiceberg retries a failed commit by re-basing the snapshot on the new head; a
    # compaction's days were merged against the snapshot it planned from, so a rebase
    # could publish a stale merge. A lost commit re-plans instead (CompactionConflict).
    "commit.retry.num-retries": "0",
    # One metadata.json per commit: keep the recent ones only.
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "50",
    "format-version": "2",
}


def arrow_optional(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every field (nested ones too, map keys excepted) nullable."""
    return pa.schema([_nullable(f) for f in schema], metadata=schema.metadata)


def _nullable(field: pa.Field) -> pa.Field:
    t = field.type
    if pa.types.is_struct(t):
        t = pa.struct([_nullable(t.field(i)) for i in range(t.num_fields)])
    elif pa.types.is_large_list(t):
        t = pa.large_list(_nullable(t.value_field))
    elif pa.types.is_list(t):
        t = pa.list_(_nullable(t.value_field))
    elif pa.types.is_map(t):
        t = pa.map_(t.key_field.with_nullable(False), _nullable(t.item_field))
    return field.with_type(t).with_nullable(True).remove_metadata()


def ensure_table(catalog: CleanCatalog, topic: str, columns: pa.Schema, day_column: str,
                 sort: Sequence[str]) -> Table:
    """``topic``'s table with at least ``columns``: created (partitioned and sorted) or
    evolved; a concurrent creator or evolver wins harmlessly (the result is the same)."""
    columns = arrow_optional(columns)
    table = catalog.load(topic)
    if table is None:
        with catalog_errors(catalog.uri):
            try:
                tx = catalog.catalog.create_table_transaction(
                    (NAMESPACE, topic), schema=columns, location=catalog.location(topic),
                    properties=TABLE_PROPERTIES)
                tx.update_spec().add_field(day_column, DayTransform(), DAY_PARTITION).commit()
                order = tx.update_sort_order()
                for name in sort:
                    order = order.asc(name, IdentityTransform())
                order.commit()
                tx.commit_transaction()
            except (TableAlreadyExistsError, CommitFailedException):
                pass  # created by another compactor meanwhile: the same shape
        table = catalog.load(topic)
        if table is None:
            raise AssertionError("a table that already exists loads")
    return evolve(catalog, table, columns)


def evolve(catalog: CleanCatalog, table: Table, columns: pa.Schema) -> Table:
    """``table`` with ``columns`` added (union by name; ids kept); unchanged if it has them."""
    columns = arrow_optional(columns)
    for _ in range(5):
        if not _missing(table.schema(), columns):
            return table
        with catalog_errors(catalog.uri):
            try:
                with table.update_schema() as update:
                    update.union_by_name(columns)
                return table
            except CommitFailedException:
                table.refresh()  # another compactor evolved it first: look again
    return table


def _missing(schema: Schema, columns: pa.Schema) -> bool:
    names = {f.name for f in schema.fields}
    return any(name not in names for name in columns.names)


# ------------------------------------------------------------------ field ids


def field_ids(schema: Schema) -> dict[str, Any]:
    """Column name -> ``[id, children]`` (children: a dict for a struct, ``element`` for
    a list, ``key``/``value`` for a map, else None); JSON-safe."""
    return {f.name: _ids(f) for f in schema.fields}


def _ids(field: NestedField) -> list[Any]:
    t = field.field_type
    if isinstance(t, StructType):
        return [field.field_id, {f.name: _ids(f) for f in t.fields}]
    if isinstance(t, ListType):
        return [field.field_id, {"element": _ids(t.element_field)}]
    if isinstance(t, MapType):
        return [field.field_id, {"key": _ids(t.key_field), "value": _ids(t.value_field)}]
    return [field.field_id, None]


def field_ids_sql(ids: Mapping[str, Any], columns: pa.Schema) -> str:
    """DuckDB's ``FIELD_IDS`` struct for the ``columns`` a file has (DuckDB refuses ids
    of absent columns; a column without an id would be unreadable by id)."""
    parts = []
    for field in columns:
        if field.name not in ids:
            raise KeyError(f"column {field.name!r} has no field id in the table schema")
        parts.append(f"{_quote(field.name)}: {_id_sql(ids[field.name], field.type)}")
    return "{" + ", ".join(parts) + "}"


def _id_sql(entry: Sequence[Any], arrow: pa.DataType) -> str:
    field_id, children = entry
    if not children:
        return str(int(field_id))
    inner: list[str] = []
    if pa.types.is_struct(arrow):
        for i in range(arrow.num_fields):
            child = arrow.field(i)
            if child.name in children:
                inner.append(f"{_quote(child.name)}: {_id_sql(children[child.name], child.type)}")
    elif pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        inner.append(f"element: {_id_sql(children['element'], arrow.value_type)}")
    elif pa.types.is_map(arrow):
        inner.append(f"key: {_id_sql(children['key'], arrow.key_type)}")
        inner.append(f"value: {_id_sql(children['value'], arrow.item_type)}")
    return "{" + ", ".join([f"__duckdb_field_id: {int(field_id)}", *inner]) + "}"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
