"""DuckDB views over the lake: clean Iceberg tables pinned to a snapshot, raw Hive files.

See the package contract (onepipe.sinks.lake.sql). pyiceberg and DuckDB calls block:
:func:`open_views` runs them in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
from pyarrow import fs as pafs
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from onepipe.schemas.errors import CatalogError
from onepipe.sinks.lake.iceberg import (
    NAMESPACE,
    CleanCatalog,
    day_files,
    open_catalog,
    resolve_snapshot,
)
from onepipe.sinks.lake.raw_layout import RAW, raw_topic_prefix
from onepipe.sinks.lake.s3 import S3Lake
from onepipe.sinks.lake.store import LakeStore

__all__ = ["RAW_PREFIX", "LakeViews", "ViewInfo", "mentioned", "open_views", "quote",
           "raw_view_name"]

#: Prefix of the raw views' names: ``raw_<topic>``.
RAW_PREFIX = "raw_"
#: The raw lake's path columns and their types (the same in DuckDB and pyarrow reads).
_HIVE_TYPES = {"partition": "BIGINT", "date": "DATE", "hour": "BIGINT"}
_HIVE_ARROW = pa.schema([("partition", pa.int64()), ("date", pa.date32()),
                         ("hour", pa.int64())])


@dataclass(frozen=True, slots=True)
class ViewInfo:
    """One view of the connection."""

    #: The view's name (unquoted; quote it with :func:`quote` in SQL).
    name: str
    #: ``clean`` (the Iceberg table) or ``raw`` (the raw files).
    kind: Literal["clean", "raw"]
    #: The topic it shows.
    topic: str
    #: The snapshot a clean view is pinned to (None: raw, or no snapshot then).
    snapshot_id: int | None = None
    #: Data files under the view (None: discovered by the reader, raw on S3).
    files: int | None = None


@dataclass(slots=True)
class LakeViews:
    """A DuckDB connection with the lake's views; closing twice is harmless."""

    #: The connection (run the query on it).
    connection: duckdb.DuckDBPyConnection
    #: The views it holds, clean then raw, by name.
    views: tuple[ViewInfo, ...]
    #: Arrow objects the connection scans (kept alive while it is open).
    _held: list[Any] = field(default_factory=list, repr=False)

    def close(self) -> None:
        self.connection.close()
        self._held.clear()


def quote(name: str) -> str:
    """``name`` as a DuckDB identifier: ``"orders.v2"`` (a view named by a topic)."""
    return '"' + name.replace('"', '""') + '"'


def raw_view_name(topic: str) -> str:
    return f"{RAW_PREFIX}{topic}"


def mentioned(name: str, query: str) -> bool:
    """Whether ``query`` may refer to ``name`` (identifiers are case-insensitive)."""
    return name.lower() in query.lower()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# ------------------------------------------------------------------ clean tables


@dataclass(frozen=True, slots=True)
class _CleanPlan:
    topic: str
    snapshot_id: int | None
    #: File locations (local paths, or ``bucket/key`` on S3).
    files: tuple[str, ...]
    schema: pa.Schema


def _pins(catalog: CleanCatalog, tables: dict[str, Table], as_of: str | None
          ) -> dict[str, Snapshot | None]:
    """The snapshot each table is read at (see the package contract)."""
    if as_of is None:
        return {t: table.current_snapshot() for t, table in tables.items()}
    text = as_of.strip()
    if text.isdigit():
        snapshot_id = int(text)
        holders = [t for t, table in tables.items() if table.snapshot_by_id(snapshot_id)]
        if not holders:
            raise CatalogError(
                f"no clean table in {catalog.lake.url} has snapshot {snapshot_id}; `onepipe "
                "lake read TOPIC --as-of ...` resolves one table's, or give an ISO time")
        held = tables[holders[0]].snapshot_by_id(snapshot_id)
        assert held is not None  # noqa: S101 - found just above
        moment = datetime.fromtimestamp(held.timestamp_ms / 1000, tz=UTC)
        pins = _at_time(tables, moment)
        pins[holders[0]] = held
        return pins
    return _at_time(tables, _resolve_time_text(text))


def _resolve_time_text(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CatalogError(f"--as-of takes a snapshot id or an ISO time such as "
                           f"2026-11-20T12:00:00Z; got {text!r}") from exc
    if moment.tzinfo is None:
        raise CatalogError(f"--as-of time {text!r} has no zone; add Z or +00:00")
    return moment


def _at_time(tables: dict[str, Table], moment: datetime) -> dict[str, Snapshot | None]:
    out: dict[str, Snapshot | None] = {}
    for topic, table in tables.items():
        try:
            out[topic] = resolve_snapshot(table, moment)
        except CatalogError:
            out[topic] = None  # no snapshot by then: the table held nothing yet
    return out


def _plan_clean(catalog: CleanCatalog, topics: Sequence[str], as_of: str | None
                ) -> list[_CleanPlan]:
    tables = {t: table for t in topics if (table := catalog.load(t)) is not None}
    pins = _pins(catalog, tables, as_of)
    plans = []
    for topic, table in tables.items():
        snapshot = pins[topic]
        schema = table.schema() if snapshot is None or snapshot.schema_id is None \
            else table.schemas()[snapshot.schema_id]
        files = [catalog.lake_path(task.file.file_path)
                 for tasks in day_files(table, snapshot).values() for task in tasks]
        plans.append(_CleanPlan(topic, snapshot.snapshot_id if snapshot else None,
                                tuple(_location(catalog.lake, p) for p in files),
                                schema.as_arrow()))
    return plans


def _location(lake: LakeStore, path: str) -> str:
    """Where a reader opens lake path ``path``: a local file, or ``bucket/key`` on S3."""
    if lake.local_root is not None:
        return str(lake.local_root / path)
    assert isinstance(lake, S3Lake)  # noqa: S101 - a lake is a folder or a bucket
    return f"{lake.bucket}/{lake.key_prefix}{path}"


def _s3_filesystem(lake: LakeStore) -> pafs.FileSystem:
    """pyarrow's S3 client for ``lake`` (its endpoint, region and keys)."""
    assert isinstance(lake, S3Lake)  # noqa: S101 - only S3 lakes get here
    options = lake.options
    kwargs: dict[str, Any] = {}
    if options.endpoint_url:
        parts = urlsplit(options.endpoint_url)
        kwargs["endpoint_override"] = parts.netloc or options.endpoint_url
        kwargs["scheme"] = parts.scheme or "https"
    if options.region:
        kwargs["region"] = options.region
    if options.access_key_id and options.secret_access_key:
        kwargs["access_key"] = options.access_key_id
        kwargs["secret_key"] = options.secret_access_key
    return pafs.S3FileSystem(**kwargs)


# ------------------------------------------------------------------ the connection


def _build(lake: LakeStore, catalog_uri: str, query: str, as_of: str | None,
           raw_topics: Sequence[str]) -> LakeViews:
    catalog = open_catalog(catalog_uri, lake)
    try:
        every = sorted(ident[-1] for ident in catalog.catalog.list_tables(NAMESPACE))
        wanted = [t for t in every if mentioned(t, query)] or every
        if as_of is not None and as_of.strip().isdigit():
            wanted = every  # the snapshot id may be any table's; the rest pin to its time
        plans = _plan_clean(catalog, wanted, as_of)
    finally:
        catalog.close()
    raws = [t for t in raw_topics if mentioned(raw_view_name(t), query)] or list(raw_topics)
    con = duckdb.connect()
    # DuckDB tracks progress only with its bar on; onepipe draws its own (stderr, TTY).
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    views = LakeViews(con, ())
    infos = [_clean_view(views, lake, plan, i) for i, plan in enumerate(plans)]
    s3 = None if lake.local_root is not None else _s3_filesystem(lake)
    infos += [_raw_view(views, lake, s3, topic, i) for i, topic in enumerate(raws)]
    views.views = tuple(infos)
    return views


def _clean_view(views: LakeViews, lake: LakeStore, plan: _CleanPlan, i: int) -> ViewInfo:
    con, name = views.connection, quote(plan.topic)
    if plan.files and lake.local_root is not None:
        listed = ", ".join(_literal(f) for f in plan.files)
        # union_by_name: a file written before a column was added reads it as NULL.
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{listed}], "
                    "union_by_name = true)")
    else:
        source: Any = (ds.dataset(list(plan.files), schema=plan.schema, format="parquet",
                                  filesystem=_s3_filesystem(lake))
                       if plan.files else plan.schema.empty_table())
        internal = f"_onepipe_clean_{i}"
        con.register(internal, source)
        views._held.append(source)
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {internal}")
    return ViewInfo(plan.topic, "clean", plan.topic, plan.snapshot_id, len(plan.files))


def _raw_view(views: LakeViews, lake: LakeStore, s3: pafs.FileSystem | None, topic: str,
              i: int) -> ViewInfo:
    con, name = views.connection, quote(raw_view_name(topic))
    location = _location(lake, raw_topic_prefix(topic)).rstrip("/")
    if s3 is None:
        types = ", ".join(f"{_literal(k)}: {v}" for k, v in _HIVE_TYPES.items())
        con.execute(
            f"CREATE VIEW {name} AS SELECT * FROM read_parquet("
            f"{_literal(location + '/**/*.parquet')}, hive_partitioning = true, "
            f"hive_types = {{{types}}}, union_by_name = true)")
        return ViewInfo(raw_view_name(topic), "raw", topic)
    found = ds.dataset(location, filesystem=s3, format="parquet",
                       partitioning=ds.partitioning(_HIVE_ARROW, flavor="hive"))
    fragments = list(found.get_fragments())
    # Files of older schema versions lack later typed columns: the union reads them null.
    schema = pa.unify_schemas([f.physical_schema for f in fragments] + [_HIVE_ARROW],
                              promote_options="permissive")
    source = ds.dataset(location, filesystem=s3, format="parquet", schema=schema,
                        partitioning=ds.partitioning(_HIVE_ARROW, flavor="hive"))
    internal = f"_onepipe_raw_{i}"
    con.register(internal, source)
    views._held.append(source)
    con.execute(f"CREATE VIEW {name} AS SELECT * FROM {internal}")
    return ViewInfo(raw_view_name(topic), "raw", topic, None, len(fragments))


async def open_views(lake: LakeStore, catalog_uri: str, query: str = "",
                     as_of: str | None = None) -> LakeViews:
    """A DuckDB connection with the lake's views for ``query`` (see the package contract)."""
    raw_topics = await lake.list_dirs(f"{RAW}/")
    return await asyncio.to_thread(_build, lake, catalog_uri, query, as_of, raw_topics)
