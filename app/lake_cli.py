"""``onepipe lake read`` and ``onepipe lake migrate``: the clean lake from the command line.

``lake read`` previews a topic's Iceberg table pinned to one snapshot - the head, or
``--as-of`` a snapshot id or a time (time travel, within the compaction retention) - or
its raw files. ``lake migrate`` converts a clean lake of the manifest format (onepipe's
first layout) into the topic's Iceberg table (onepipe.agents.compact.migrate), proving the
row checksum equal before the old files go.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime

import orjson
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from onepipe.agents.compact import CompactionConfig
from onepipe.app.settings import Settings
from onepipe.schemas.errors import ConfigError
from onepipe.sinks.lake.iceberg import DAY_COLUMN, open_catalog, read_days, resolve_snapshot
from onepipe.sinks.lake.raw_reader import read_raw
from onepipe.sinks.lake.store import LakeStore

__all__ = ["run_lake_migrate", "run_lake_read"]


async def run_lake_read(settings: Settings, args: argparse.Namespace) -> int:
    """``onepipe lake read``: a preview of clean (Iceberg, one snapshot) or raw rows."""
    if args.limit < 0:
        raise ConfigError(f"--limit must be 0 (all) or more, got {args.limit}")
    limit = args.limit or None
    cache = settings.data_dir / "compact" / "cache"
    async with settings.open_lake() as lake:
        if args.raw:
            table = await read_raw(lake, args.topic, args.dates, cache, limit=limit)
            source = f"raw/{args.topic}"
        else:
            found = await asyncio.to_thread(_read_clean, settings, lake, args, limit)
            if found is None:
                print(f"error: {args.topic!r} has no clean lake in "
                      f"{settings.resolved_lake_url}; run `onepipe compact {args.topic}`",
                      file=sys.stderr)
                return 1
            table, source = found
    rows = table.to_pylist()
    if args.json:
        for row in rows:
            print(orjson.dumps(row, default=_json_value).decode())
        return 0
    shown = [c for c in table.column_names if c not in _HIDDEN_COLUMNS]
    view = Table(title=f"{source}: {len(rows)} row(s)")
    for column in shown:
        view.add_column(column, overflow="fold")
    for row in rows:
        view.add_row(*(_cell(row[c]) for c in shown))
    Console().print(view)
    return 0


def _read_clean(settings: Settings, lake: LakeStore, args: argparse.Namespace,
                limit: int | None) -> tuple[pa.Table, str] | None:
    """The clean rows ``lake read`` shows (pinned to one snapshot), or None: no table."""
    catalog = open_catalog(settings.resolved_catalog_uri, lake)
    try:
        table = catalog.load(args.topic)
        snapshot = None if table is None else resolve_snapshot(table, args.as_of)
        if table is None or snapshot is None:
            return None
        rows = read_days(table, args.dates, snapshot, limit=limit)
    finally:
        catalog.close()
    return (rows.drop_columns([DAY_COLUMN]),
            f"clean/{args.topic} (snapshot {snapshot.snapshot_id}, sequence number "
            f"{snapshot.sequence_number})")


#: Bulky columns a preview leaves out (``--json`` shows everything).
_HIDDEN_COLUMNS = frozenset({"_kafka_topic", "_kafka_headers", "_kafka_key", "_kafka_value",
                             "_kafka_schema_id"})


def _json_value(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.hex() if len(value) <= 16 else value[:16].hex() + "..."
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="milliseconds")
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


async def run_lake_migrate(settings: Settings, args: argparse.Namespace) -> int:
    """``onepipe lake migrate TOPIC|--all``: manifest-format clean lakes into Iceberg."""
    from onepipe.agents.compact.migrate import manifest_topics, migrate_topic
    from onepipe.tables.registry_store import RegistryStore

    if (args.topic is None) == (not args.all_topics):
        raise ConfigError("name one topic or pass --all (not both)")
    async with RegistryStore(settings.kafka, settings.registry_topic,
                             replication_factor=settings.replication_factor,
                             fetch_wait_ms=settings.registry_fetch_wait_ms) as store, \
            settings.open_lake() as lake:
        state = store.state
        topics = [args.topic] if args.topic else sorted(
            t for t in await manifest_topics(lake) if t in state.topics)
        if args.topic and args.topic not in state.topics:
            raise ConfigError(f"topic {args.topic!r} is not registered; `onepipe apply` "
                              "registers a catalog folder")
        failed = 0
        for topic in topics:
            meta = state.topic_metadata(topic)
            schema = state.reader_schema(topic)
            config = _config(settings)
            report = await migrate_topic(lake, meta, schema, config)
            print(report.describe())
            failed += not report.ok
    if not topics:
        print("no manifest-format clean lake found: nothing to migrate")
    return 1 if failed else 0


def _config(settings: Settings) -> CompactionConfig:
    return CompactionConfig(
        work_dir=settings.data_dir / "compact", catalog_uri=settings.resolved_catalog_uri,
        memory_limit=settings.compact_memory_limit, threads=settings.compact_threads,
        retention_seconds=settings.compact_retention_seconds)
