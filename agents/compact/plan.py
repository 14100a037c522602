"""Pure parts of a compaction: which raw files to merge, the SQL shape of a topic, day tasks.

No I/O here (onepipe.agents.compact.compactor runs what this module describes):

- :func:`select_raw` picks, per partition, the raw files after the snapshot's watermark
  that are contiguous from it. It stops at the first gap (a file not visible yet: the
  archive writes a partition's files in order, so a later file may land first only in
  listings of other stores). Files wholly below the watermark are skipped; a file that
  straddles it (a zombie archive writer can leave overlapping files) is taken and its
  rows are trimmed by offset. A partition the table has never merged starts at its
  first archived offset (Kafka retention may have removed earlier ones before the
  archive started).
- :class:`Shape` is a topic's merge as SQL over the raw/clean column layout: the unique
  key columns (a topic without key uses ``(_kafka_partition, _kafka_offset)``), the rule's
  ``ORDER BY`` (onepipe.schemas.merge.MergeRule.sql_order, the one definition of ranking), the
  day of a row, and the sort order of a clean day.
- :class:`DayTask` describes writing the new data files of one day; it is plain data
  (``to_dict``/``from_dict``, JSON-safe), so tasks can be handed to other workers
  (onepipe.agents.compact.pool) once their inputs are staged in the lake.

Day of a row (UTC, a ``DATE`` in the day column of the clean table, its partition): from
``partition_time`` - the Kafka timestamp, a ``timestamp-millis``/``-micros`` field, a
plain ``long`` (epoch millis) or an ``int`` ``date``. Instants before 1970 or after 9999
are clamped into 1970-01-01 / 9999-12-31, exactly as the raw layout buckets Kafka
timestamps (onepipe.sinks.lake.raw_layout.hour_bucket) and onepipe.schemas.partition_day
places rows for every other system.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.errors import CompactionError
from onepipe.schemas.merge import OFFSET_COLUMN, PARTITION_COLUMN, MergeRule
from onepipe.schemas.metadata import KAFKA_TIMESTAMP, TopicMetadata
from onepipe.sinks.formats.arrow_types import record_fields
from onepipe.sinks.formats.raw import TIMESTAMP_COLUMN
from onepipe.sinks.lake.iceberg.schema import DAY_COLUMN
from onepipe.sinks.lake.raw_layout import RawFile

DECODE_ERROR_COLUMN = "_kafka_decode_error"
_LAST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, as onepipe.sinks.lake.raw_layout


def quote(name: str) -> str:
    """A DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"


def path_list(paths: Sequence[str]) -> str:
    """A DuckDB list of file paths, for ``read_parquet``."""
    return "[" + ", ".join(literal(p) for p in paths) + "]"


def scan(paths: Sequence[str], *, filename: str | None = None) -> str:
    """``read_parquet`` over local files: columns united by name (files of different ages
    differ in typed columns), and no Hive partitioning - lake paths hold ``date=``,
    ``partition=`` and ``hour=`` folders that DuckDB would otherwise add as columns."""
    extra = f", filename={literal(filename)}" if filename else ""
    return (f"read_parquet({path_list(paths)}, union_by_name=true, "
            f"hive_partitioning=false{extra})")


# ------------------------------------------------------------------ raw selection


@dataclass(frozen=True, slots=True)
class PartitionSelection:
    """The raw files of one partition a run merges."""

    #: Kafka partition.
    partition: int
    #: First offset to merge (the snapshot's watermark, or the first archived offset).
    start: int
    #: The watermark after the run: the offset after the last merged file.
    end: int
    #: The files, in offset order.
    files: tuple[RawFile, ...]
    #: Whether a taken file starts below ``start`` (its rows must be trimmed by offset).
    trims: bool
    #: Whether taken files overlap each other (the same offsets appear twice).
    duplicates: bool

    @property
    def records(self) -> int:
        return self.end - self.start


def select_raw(files: Sequence[RawFile], merged: Mapping[int, int]
               ) -> dict[int, PartitionSelection]:
    """Per partition with anything new: the contiguous files from its watermark."""
    by_partition: dict[int, list[RawFile]] = {}
    for f in files:
        by_partition.setdefault(f.partition, []).append(f)
    selected: dict[int, PartitionSelection] = {}
    for partition, group in sorted(by_partition.items()):
        group.sort(key=lambda f: (f.first, f.last))
        start = merged.get(partition, group[0].first)
        position = start
        taken: list[RawFile] = []
        trims = duplicates = False
        for f in group:
            if f.last < position:
                continue  # already merged (or a zombie's copy of merged offsets)
            if f.first > position:
                break  # a gap: the file that fills it is not visible yet
            trims = trims or f.first < start
            duplicates = duplicates or (bool(taken) and f.first < position)
            taken.append(f)
            position = f.last + 1
        if taken:
            selected[partition] = PartitionSelection(partition, start, position, tuple(taken),
                                                     trims, duplicates)
    return selected


def trim_filter(selection: Mapping[int, PartitionSelection]) -> str:
    """A SQL condition keeping rows at or past each partition's start ('true' if none)."""
    cases = [f"WHEN {s.partition} THEN {s.start}" for s in selection.values() if s.trims]
    if not cases:
        return "true"
    return (f"{quote(OFFSET_COLUMN)} >= CASE {quote(PARTITION_COLUMN)} {' '.join(cases)} "
            "ELSE 0 END")


# ------------------------------------------------------------------ SQL shape


@dataclass(frozen=True, slots=True)
class Shape:
    """A topic's merge expressed over the lake's column layout."""

    #: Columns that identify a row: the unique key, or (partition, offset) without one.
    key: tuple[str, ...]
    #: Whether the topic has a unique key (else every decodable record is its own row).
    keyed: bool
    #: ``ORDER BY`` list ranking a key's versions winner first (MergeRule.sql_order).
    order: str
    #: Expression: the row's day as a ``DATE`` (NULL when partition_time is null).
    day: str
    #: Condition: the row can be placed in clean (decoded, key and partition time set).
    valid: str
    #: Condition: the row decoded but lacks a key field or its partition time.
    incomplete: str
    #: ``ORDER BY`` list of a clean day.
    sort: str
    #: The columns of ``sort``, in order (the table's declared sort order).
    sort_columns: tuple[str, ...] = ()

    @property
    def key_list(self) -> str:
        return ", ".join(quote(k) for k in self.key)


def shape_for(meta: TopicMetadata, schema: AvroSchema | None) -> Shape:
    """The SQL shape of ``meta``'s topic whose typed columns follow ``schema``."""
    time_column = TIMESTAMP_COLUMN if meta.partition_time == KAFKA_TIMESTAMP \
        else meta.partition_time
    day = _day_expression(time_column, _time_type(meta, schema))
    keyed = bool(meta.key)
    key = meta.key if keyed else (PARTITION_COLUMN, OFFSET_COLUMN)
    present = " AND ".join([*(f"{quote(k)} IS NOT NULL" for k in key),
                            f"{quote(time_column)} IS NOT NULL"])
    decoded = f"{quote(DECODE_ERROR_COLUMN)} IS NULL"
    sort_columns = tuple(key) if keyed else (time_column, PARTITION_COLUMN, OFFSET_COLUMN)
    return Shape(key=tuple(key), keyed=keyed, order=MergeRule(meta.order).sql_order(),
                 day=day, valid=f"{decoded} AND {present}",
                 incomplete=f"{decoded} AND NOT ({present})",
                 sort=", ".join(quote(c) for c in sort_columns), sort_columns=sort_columns)


def _time_type(meta: TopicMetadata, schema: AvroSchema | None) -> pa.DataType:
    if meta.partition_time == KAFKA_TIMESTAMP:
        return pa.timestamp("ms", tz="UTC")
    fields = {}
    if schema is not None and schema.is_record:
        fields = {f.name: f.type for f, _ in record_fields(schema.json)}
    found = fields.get(meta.partition_time)
    if found is None:
        raise CompactionError(
            f"partition_time {meta.partition_time!r} of topic {meta.topic!r} is not a "
            f"top-level field of its latest schema (fields: {', '.join(fields) or 'none'}); "
            "fix the catalog entry")
    return found


def _day_expression(column: str, arrow_type: pa.DataType) -> str:
    col = quote(column)
    if pa.types.is_date32(arrow_type):
        date = f"least(greatest({col}, DATE '1970-01-01'), DATE '9999-12-31')"
    elif pa.types.is_timestamp(arrow_type) or pa.types.is_int64(arrow_type):
        millis = f"epoch_ms({col})" if pa.types.is_timestamp(arrow_type) else col
        # epoch_ms(BIGINT) is a TIMESTAMP (no zone): the UTC day whatever the session zone.
        date = f"CAST(epoch_ms(least(greatest({millis}, 0), {_LAST_MS})) AS DATE)"
    else:
        raise CompactionError(
            f"partition_time column {column!r} has type {arrow_type}; expected a timestamp, "
            "a long (epoch millis) or a date")
    return date


# ------------------------------------------------------------------ day tasks


@dataclass(frozen=True, slots=True)
class DayVersion:
    """What one execution of a day task wrote: the day's new data files (unpublished)."""

    #: The table sequence number of the snapshot that may publish them (``DayTask.seq``).
    seq: int
    #: Lake paths of its Parquet files, in order (rows are sorted across them); none
    #: when every key of the day moved to another day.
    files: tuple[str, ...]
    #: Rows in all files together.
    rows: int
    #: Bytes of all files together.
    bytes: int


@dataclass(frozen=True, slots=True)
class DayTask:
    """Write the new data files of day ``date``: plain data, serialisable as a dict.

    New rows = (rows of ``old_files`` whose key is not in ``keys_file``) + (rows of
    ``winners_file`` whose day is ``date``), sorted by ``sort``. ``winners_file`` is
    sorted by (day, sort), so without old files its slice is written as read.
    ``winners_file``/``keys_file`` are local files of the planning run, or - ``staged`` -
    lake paths any worker can fetch (onepipe.agents.compact.day.stage_inputs).
    """

    #: Kafka topic.
    topic: str
    #: The day, ``YYYY-MM-DD``.
    date: str
    #: Table sequence number of the snapshot that will publish the files (in their names).
    seq: int
    #: Id of the run; output files are named with it (onepipe.sinks.lake.iceberg.layout).
    run_id: str
    #: Lake paths of the day's current data files (none when the day is new).
    old_files: tuple[str, ...]
    #: Parquet file of the run's winners (at least those of ``date``), with the day column.
    winners_file: str
    #: Parquet file of the keys that have new versions (None: nothing to remove).
    keys_file: str | None
    #: Key columns, for removing superseded rows.
    key: tuple[str, ...]
    #: ``ORDER BY`` list of a clean day.
    sort: str
    #: The table's field ids (onepipe.sinks.lake.iceberg.field_ids), written into the files.
    field_ids: Mapping[str, Any]
    #: Whether ``winners_file`` and ``keys_file`` are lake paths (else local files).
    staged: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["old_files"] = list(self.old_files)
        data["key"] = list(self.key)
        data["field_ids"] = dict(self.field_ids)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DayTask:
        return cls(**{**data, "old_files": tuple(data["old_files"]), "key": tuple(data["key"])})

    def sql(self, old_local: Sequence[str], winners_local: str | None = None,
            keys_local: str | None = None) -> str:
        """The query producing the day's rows (with the day column); ``*_local`` are local
        copies of the inputs (``winners_file``/``keys_file`` themselves when not given)."""
        winners_path = winners_local or self.winners_file
        keys_path = keys_local or self.keys_file
        winners = (f"SELECT * FROM {scan([winners_path])} "
                   f"WHERE {quote(DAY_COLUMN)} = {literal(self.date)}")
        if not old_local:
            return winners
        old = f"SELECT o.* FROM {scan(old_local)} o"
        if keys_path is not None:
            keys = ", ".join(quote(k) for k in self.key)
            old += f" ANTI JOIN (SELECT {keys} FROM {scan([keys_path])}) k USING ({keys})"
        return f"SELECT * FROM ({old} UNION ALL BY NAME {winners}) ORDER BY {self.sort}"
