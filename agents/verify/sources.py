"""The systems ``verify`` compares, behind one protocol; the clean lake and the stream.

Contract of a :class:`VerifySource` (one system holding a topic's deduplicated rows):

- ``figures(days)`` gives the :class:`~onepipe.schemas.figures.DayFigures` (rows, keys,
  sums, checksum) of each day the system holds within ``days`` (a :class:`DayRange`,
  bounds inclusive, ``None`` for all), computed with *the* figures module over Arrow data
  and the topic's spec (onepipe.sinks.formats.topic_view.spec_for), so equal data gives
  equal figures in every system. A day it does not hold is absent (the caller reads it as
  zero).
- The drill-down works on **key hashes**: ``row_hashes`` over a spec of the key fields
  only (:attr:`TopicView.key_spec`), so every system hashes a key alike.
  ``bucket_summaries(day, buckets)`` answers, per bucket (the top ``bits`` bits of the key
  hash), the row count and the checksum of its rows; ``keys(day, bits, chosen)`` lists
  the rows of a few buckets, per key hash: the key's fields (readable, JSON-safe) and its
  row hash(es). A remote system (a SQL sink) computes both where the data is and ships
  only these summaries, then the keys of the few buckets that differ - never the day.
- Sources read the data they need per call (a drill-down reads a day again); nothing is
  cached between calls but the stream's winners, which must be read whole anyway.

Sources here:

- onepipe.agents.verify.clean.CleanLakeSource: the topic's Iceberg table
  (onepipe.sinks.lake.iceberg) pinned to one snapshot - the head, or a named one (id or
  time) - whose data files of each day come from Iceberg's scan planning; each file is
  read as Parquet record batches of the needed columns, never a whole day in Python
  objects. Columns a day's files lack
  (written before a schema added them) read as nulls. If a file of the head vanishes
  (its snapshot expired mid-read) the call starts over from the new head.
- onepipe.agents.verify.stream.StreamSource: the ``.unique`` stream's winners.
- The checksum table (RocksDB, maintained by the dedup agent) plugs in as another
  :class:`VerifySource` (see the protocol's docstring).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from onepipe.schemas.checksum import row_hashes, select_columns
from onepipe.schemas.checksum_spec import ChecksumSpec
from onepipe.schemas.figures import DayFigures, figures
from onepipe.schemas.partition_day import day_name, partition_days
from onepipe.sinks.formats.topic_view import TopicView

__all__ = ["BATCH_ROWS", "ArrowDays", "BucketSummary", "DayRange",
           "DaysInMemory", "KeyRows", "split_days",
           "VerifySource", "json_safe"]

#: Rows per record batch read from Parquet: big enough that the figures' per-call cost
#: (~1 ms) vanishes, small enough to bound memory.
BATCH_ROWS = 64 * 1024
_DAY = "_verify_day"
_WORD = 64
A = TypeVar("A", bound="Accumulator")


# ------------------------------------------------------------------ the protocol


@dataclass(frozen=True, slots=True)
class DayRange:
    """Days ``first`` to ``last`` (``YYYY-MM-DD``, inclusive; None: unbounded)."""

    first: str | None = None
    last: str | None = None

    def __contains__(self, day: object) -> bool:
        # YYYY-MM-DD strings order like the days they name
        return (isinstance(day, str) and (self.first is None or day >= self.first)
                and (self.last is None or day <= self.last))

    @property
    def single(self) -> str | None:
        """The day, when the range is exactly one day."""
        return self.first if self.first is not None and self.first == self.last else None


@dataclass(frozen=True, slots=True)
class BucketSummary:
    """The rows of one key-hash bucket in one system."""

    #: Rows whose key hash falls in the bucket.
    rows: int
    #: Sum of their row hashes mod 2**64.
    checksum: int


@dataclass(frozen=True, slots=True)
class KeyRows:
    """One key's rows in one system (normally one row)."""

    #: The key fields, JSON-safe (bytes as hex, times as ISO text, decimals as text).
    key: Mapping[str, Any]
    #: Row hash of each row holding the key, sorted.
    row_hashes: tuple[int, ...]


class VerifySource(Protocol):
    """A system holding a topic's deduplicated rows; see the module contract.

    The checksum table (dedup agent, RocksDB) implements this with ``figures`` read from
    its per-day totals and the two drill-down calls answered from its per-key entries.
    """

    #: Short name shown in reports: ``clean``, ``stream``, ``checksum``, a sink's name.
    name: str

    async def figures(self, days: DayRange | None) -> dict[str, DayFigures]: ...

    async def bucket_summaries(self, day: str, bits: int, within_bits: int = 0,
                               within: frozenset[int] = frozenset()
                               ) -> dict[int, BucketSummary]:
        """Per bucket of the top ``bits`` bits: rows and checksum, of the rows whose top
        ``within_bits`` bits are in ``within`` (every row when ``within_bits`` is 0)."""
        ...

    async def keys(self, day: str, bits: int, chosen: frozenset[int]) -> dict[int, KeyRows]:
        """The rows of the buckets ``chosen`` (top ``bits`` bits), per key hash."""
        ...


def json_safe(value: Any) -> Any:
    """A key value as JSON data: what reports show and compare across systems."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _hashes(batch: pa.RecordBatch, view: TopicView) -> tuple[pa.Array, pa.Array]:
    """(key hash, row hash) of each row, as uint64 arrays."""
    return row_hashes(batch, view.key_spec), row_hashes(batch, view.spec)


def _top(hashes: pa.Array, bits: int) -> pa.Array:
    return pc.shift_right(hashes, pa.scalar(_WORD - bits, pa.uint64()))


def _selected(key_hashes: pa.Array, bits: int, chosen: frozenset[int]) -> pa.Array:
    return pc.is_in(_top(key_hashes, bits), pa.array(sorted(chosen), pa.uint64()))


class Accumulator(Protocol):
    """Folds the batches of one day, one at a time."""

    def add(self, batch: pa.RecordBatch) -> None: ...


class _Figures:
    """Accumulates a day's figures (DayFigures ``+``: one call per batch)."""

    def __init__(self, spec: ChecksumSpec) -> None:
        self.spec = spec
        self.total = DayFigures.zero(spec)

    def add(self, batch: pa.RecordBatch) -> None:
        self.total = self.total + figures(batch, self.spec)


class _Buckets:
    """Accumulates bucket summaries over batches (Arrow group-by; uint64 sums wrap)."""

    def __init__(self, view: TopicView, bits: int, within_bits: int,
                 within: frozenset[int]) -> None:
        self.view, self.bits, self.within_bits, self.within = view, bits, within_bits, within
        self.result: dict[int, BucketSummary] = {}

    def add(self, batch: pa.RecordBatch) -> None:
        key_hash, row_hash = _hashes(batch, self.view)
        table = pa.table({"b": _top(key_hash, self.bits), "h": row_hash})
        if self.within_bits:
            table = table.filter(_selected(key_hash, self.within_bits, self.within))
        grouped = table.group_by("b").aggregate([("h", "sum"), ("h", "count")])
        for b, total, count in zip(grouped.column("b").to_pylist(),
                                   grouped.column("h_sum").to_pylist(),
                                   grouped.column("h_count").to_pylist(), strict=True):
            held = self.result.get(b, BucketSummary(0, 0))
            self.result[b] = BucketSummary(held.rows + count,
                                           (held.checksum + total) & (2**64 - 1))


class _Keys:
    """Accumulates the rows of chosen buckets, per key hash (few rows: Python is fine)."""

    def __init__(self, view: TopicView, bits: int, chosen: frozenset[int]) -> None:
        self.view, self.bits, self.chosen = view, bits, chosen
        self.rows: dict[int, tuple[dict[str, Any], list[int]]] = {}

    def add(self, batch: pa.RecordBatch) -> None:
        key_hash, row_hash = _hashes(batch, self.view)
        mask = _selected(key_hash, self.bits, self.chosen)
        if not pc.any(mask).as_py():
            return
        names = list(self.view.key_spec.schema.names)
        picked = pa.Table.from_batches([batch]).filter(mask)
        # The key fields cast to their canonical types, as every system hashes them.
        keys = pa.Table.from_batches(list(select_columns(picked, self.view.key_spec, names)))
        key_rows = keys.to_pylist()
        for k, h, key in zip(key_hash.filter(mask).to_pylist(),
                             row_hash.filter(mask).to_pylist(), key_rows, strict=True):
            entry = self.rows.setdefault(k, ({n: json_safe(v) for n, v in key.items()}, []))
            entry[1].append(h)

    def result(self) -> dict[int, KeyRows]:
        return {k: KeyRows(key, tuple(sorted(hashes))) for k, (key, hashes) in self.rows.items()}


class ArrowDays:
    """A source whose days are scanned as Arrow batches: figures and drill-down on top.

    Subclasses give ``_day_names`` and ``_scan(day, start)``: ``start()`` makes a fresh
    accumulator (again if the read has to start over), whose ``add`` gets every batch of
    the day (CPU work: run it off the event loop); the last one made is returned.
    """

    name = "arrow"

    def __init__(self, view: TopicView) -> None:
        self.view = view

    async def _day_names(self) -> list[str]:
        raise NotImplementedError

    async def _scan(self, day: str, start: Callable[[], A]) -> A:
        raise NotImplementedError

    async def figures(self, days: DayRange | None) -> dict[str, DayFigures]:
        wanted = [d for d in await self._day_names() if days is None or d in days]
        out: dict[str, DayFigures] = {}
        for day in wanted:
            out[day] = (await self._scan(day, lambda: _Figures(self.view.spec))).total
        return out

    async def bucket_summaries(self, day: str, bits: int, within_bits: int = 0,
                               within: frozenset[int] = frozenset()
                               ) -> dict[int, BucketSummary]:
        def start() -> _Buckets:
            return _Buckets(self.view, bits, within_bits, within)

        if day not in await self._day_names():
            return {}
        return (await self._scan(day, start)).result

    async def keys(self, day: str, bits: int, chosen: frozenset[int]) -> dict[int, KeyRows]:
        if not chosen or day not in await self._day_names():
            return {}
        return (await self._scan(day, lambda: _Keys(self.view, bits, chosen))).result()


class DaysInMemory(ArrowDays):
    """A source read whole once, then held as one Arrow table per day (the ``.unique``
    stream, an online sink's table): subclasses give ``_read_days``."""

    def __init__(self, view: TopicView) -> None:
        super().__init__(view)
        self._days: dict[str, pa.Table] | None = None

    async def _read_days(self) -> dict[str, pa.Table]:
        raise NotImplementedError

    async def _load(self) -> dict[str, pa.Table]:
        if self._days is None:
            self._days = await self._read_days()
        return self._days

    async def _day_names(self) -> list[str]:
        return sorted(await self._load())

    async def _scan(self, day: str, start: Callable[[], A]) -> A:
        table = (await self._load()).get(day)
        into = start()
        if table is None:
            return into

        def run() -> None:
            for batch in table.to_batches(BATCH_ROWS):
                into.add(batch)

        await asyncio.to_thread(run)
        return into


def split_days(table: pa.Table, view: TopicView) -> dict[str, pa.Table]:
    """``table`` (the view's columns) as one table per day of its time column."""
    days = partition_days(table.column(view.time_column)).cast(pa.int32())
    table = table.append_column(_DAY, days)
    return {day_name(n): table.filter(pc.equal(table.column(_DAY), n)).drop_columns([_DAY])
            for n in pc.unique(days.drop_null()).to_pylist()}


def _complete(batch: pa.RecordBatch, view: TopicView) -> pa.RecordBatch:
    """``batch`` with every column of the view, nulls for those it lacks."""
    present = set(batch.schema.names)
    if all(n in present for n in view.columns):
        return batch
    arrays = [batch.column(n) if n in present else pa.nulls(batch.num_rows, view.column_type(n))
              for n in view.columns]
    return pa.RecordBatch.from_arrays(arrays, names=list(view.columns))


def scan_parquet(source: Path | pa.Buffer, view: TopicView, into: Accumulator) -> None:
    """Feed each batch of one Parquet file to ``into`` (in a worker thread)."""
    handle = pq.ParquetFile(source if isinstance(source, Path) else pa.BufferReader(source))
    present = set(handle.schema_arrow.names)
    columns = [n for n in view.columns if n in present]
    for batch in handle.iter_batches(batch_size=BATCH_ROWS, columns=columns):
        into.add(_complete(batch, view))
