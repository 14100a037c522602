"""The checksum table of one ``.unique`` partition: per-day figures of the current winners.

Contract:

- One RocksDB database per ``<topic>.unique`` partition, at ``<root>/<topic>/<partition>``.
  Three column families: the default one maps a winner's Kafka key (the canonical key
  bytes) to its **contribution** (:class:`Contribution`: its day, row hash and exact sum
  values - what it takes to remove it again); ``days`` maps a day number (4 bytes,
  big-endian) to that day's :class:`~onepipe.schemas.figures.DayFigures` (JSON); ``hours`` maps an
  hour number (onepipe.schemas.partition_day.partition_hours, 4 bytes) to that hour's figures
  (the same fold one window finer: a day's figures are the sum of its hours'); ``meta``
  holds the next ``.unique`` offset to fold (:attr:`ChecksumStore.applied_offset`).
- The table is the fold of ``<topic>.unique[p]`` below its applied offset: every message
  of ``.unique`` is a new winner of its key (onepipe.agents.dedup.agent), so folding one means removing
  the key's previous contribution from its old day and adding the new one to its day.
  :meth:`ChecksumStore.apply` writes the changed contributions, the changed days and the
  applied offset in **one** ``WriteBatch``, with the write-ahead log on: after any crash
  the database holds the fold of a prefix of ``.unique``, never half a batch, and the
  reader resumes at the applied offset (exactly-once by construction). Deleting the
  folder is always safe: the fold restarts from offset 0.
- :func:`fold` is the rule, pure: per day, figures add up exactly (the same row hash as
  onepipe.schemas.checksum, the same exact sums as onepipe.schemas.exact_sum, one key per winner), so
  the table equals ``onepipe.schemas.figures.figures`` over the winners grouped by day. A key
  folded twice in one batch chains (only the last counts). A winner that did not decode,
  or has no day, removes its key's previous contribution and adds none (as
  onepipe.agents.verify.stream leaves such winners out).
- Retention: days before a cutoff are dropped (:func:`fold` reports them) and
  contributions of dropped days are neither removed nor added later, so a dropped day
  never comes back with partial figures. Their per-key entries stay until the key
  changes again (known gap: no per-day key index to delete them by).
- Known gap: contributions written before hour windows existed carry no hour and are
  taken as hour 00 of their day (delete the data dir to rebuild such a table).
- :class:`RawCountStore` is the raw record count of one **source** partition (every
  record, duplicates and losers included): per day a :class:`RawCount` (records, of
  them undecodable) and the next source offset to count, one ``WriteBatch`` per batch
  (exactly-once like the fold); :func:`count_raw` is its rule. It lives at
  ``<root>/<topic>/raw/<partition>``, apart from the fold, since the group may assign a
  source partition and its ``.unique`` partition to different members.
- A closed store refuses use; closing twice is harmless. Writes and reads may run in a
  worker thread (rocksdict releases the GIL); they take turns with ``close``.
"""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

import orjson
import pyarrow as pa
from rocksdict import Options, Rdict, WriteBatch

from onepipe.schemas.checksum import ChecksumSpec, select_columns
from onepipe.schemas.errors import OnepipeError
from onepipe.schemas.exact_sum import ExactSum, zero_sum
from onepipe.schemas.figures import DayFigures

__all__ = ["ChecksumStore", "ChecksumStoreClosedError", "Contribution", "FoldResult",
           "RawCount", "RawCountStore", "contributions", "count_raw", "fold"]

_DAYS = "days"
_HOURS = "hours"
_META = "meta"
_APPLIED = b"applied"
_OFFSET = struct.Struct(">q")
_DAY = struct.Struct(">i")
_MASK = 2**64 - 1
#: A float64 is an integer multiple of 2**-1074 (as onepipe.schemas.exact_sum keeps float sums).
_FLOAT_UNIT = 2**1074
_SPECIAL = ("inf", "-inf", "nan")


class ChecksumStoreClosedError(OnepipeError):
    """A checksum store was used after it was closed (its partition was revoked)."""

    code = "store_closed"


SumValue = int | str | None
"""One row's value of one sum field: exact units (an int: the int, the unscaled decimal,
the float times 2**1074), ``"inf"``/``"-inf"``/``"nan"`` for special floats, None for null."""


class Contribution(NamedTuple):
    """What one winner adds to its day (a NamedTuple: one is built per winner)."""

    #: Day number (days since 1970-01-01).
    day: int
    #: Its row hash (onepipe.schemas.checksum.row_hashes).
    row_hash: int
    #: One value per spec sum field.
    sums: tuple[SumValue, ...]
    #: Hour number (hours since 1970-01-01T00; ``hour // 24 == day``).
    hour: int = 0


def encode_contribution(c: Contribution) -> bytes:
    # Units can pass 64 bits (floats are scaled by 2**1074): ints as text.
    return orjson.dumps([c.day, c.row_hash,
                         [s if s is None or isinstance(s, str) else str(s) for s in c.sums],
                         c.hour])


def decode_contribution(data: bytes) -> Contribution:
    day, row_hash, sums, *hour = orjson.loads(data)
    return Contribution(day, row_hash, tuple(
        None if s is None else s if s in _SPECIAL else int(s) for s in sums),
        hour[0] if hour else day * 24)


# ---------------------------------------------------------------- the rule (pure)


def _float_value(x: float) -> SumValue:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    numerator, denominator = x.as_integer_ratio()  # denominator: a power of 2 <= 2**1074
    return numerator * (_FLOAT_UNIT // denominator)


def _decimal_value(d: Decimal, scale: int) -> int:
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)  # a decimal column holds no NaN/inf
    unscaled = int("".join(map(str, digits)) or "0")
    shift = exponent + scale  # value = unscaled * 10**exponent = units * 10**-scale
    units = unscaled * 10**shift if shift >= 0 else unscaled // 10**-shift
    return -units if sign else units


def _sum_values(column: pa.Array, t: pa.DataType) -> list[SumValue]:
    """Each row's exact value of one sum column (canonical type ``t``), as exact_sum sums."""
    if pa.types.is_floating(t):
        return [None if x is None else _float_value(x) for x in column.to_pylist()]
    if pa.types.is_decimal(t):
        scale = t.scale
        return [None if d is None else _decimal_value(d, scale) for d in column.to_pylist()]
    values: list[SumValue] = column.cast(pa.int64()).to_pylist()
    return values


def contributions(table: pa.Table, spec: ChecksumSpec, row_hashes: Sequence[int],
                  days: Sequence[int | None], hours: Sequence[int | None] | None = None
                  ) -> list[Contribution | None]:
    """Each row's contribution (None when it has no day); column-wise but for the zip.

    ``hours`` (partition_hours of the same column) default to hour 00 of each day.
    """
    if hours is None:
        hours = [None if d is None else d * 24 for d in days]
    columns: list[list[SumValue]] = [[] for _ in spec.sum_fields]
    if spec.sum_fields:
        for batch in select_columns(table, spec, spec.sum_fields):
            for i, name in enumerate(spec.sum_fields):
                columns[i].extend(_sum_values(batch.column(i), spec.schema.field(name).type))
    per_row = zip(*columns, strict=True) if columns else (() for _ in days)
    return [None if day is None or hour is None else Contribution(day, h, tuple(s), hour)
            for day, hour, h, s in zip(days, hours, row_hashes, per_row, strict=True)]


@dataclass(slots=True)
class _Delta:
    """Signed change of one day's figures, in plain ints until the end of a batch."""

    rows: int = 0
    keys: int = 0
    checksum: int = 0
    units: list[int] = field(default_factory=list)
    pos_inf: list[int] = field(default_factory=list)
    neg_inf: list[int] = field(default_factory=list)
    nan: list[int] = field(default_factory=list)

    def add(self, c: Contribution, sign: int, spec: ChecksumSpec) -> None:
        if not self.units:
            n = len(spec.sum_fields)
            self.units, self.pos_inf, self.neg_inf, self.nan = [0] * n, [0] * n, [0] * n, [0] * n
        self.rows += sign
        if spec.count_distinct:
            self.keys += sign
        if spec.row_checksum:
            self.checksum += sign * c.row_hash
        for i, s in enumerate(c.sums):
            if s is None:
                continue
            if s == "nan":
                self.nan[i] += sign
            elif s == "inf":
                self.pos_inf[i] += sign
            elif s == "-inf":
                self.neg_inf[i] += sign
            else:
                assert isinstance(s, int)
                self.units[i] += sign * s

    def figures(self, spec: ChecksumSpec) -> DayFigures:
        sums: dict[str, ExactSum] = {}
        for i, name in enumerate(spec.sum_fields):
            zero = zero_sum(spec.schema.field(name).type)
            sums[name] = (ExactSum(zero.kind, self.units[i], zero.scale, self.pos_inf[i],
                                   self.neg_inf[i], self.nan[i]) if self.units else zero)
        return DayFigures(self.rows, self.keys, self.checksum & _MASK, sums)


@dataclass(frozen=True, slots=True)
class FoldResult:
    """What one batch changes in a table (written by :meth:`ChecksumStore.apply`)."""

    #: Key -> its new contribution, or None to delete the key.
    entries: dict[bytes, Contribution | None]
    #: Day -> its new figures (days with no row left are in :attr:`dropped` instead).
    days: dict[int, DayFigures]
    #: Days to delete: no row left, or older than the retention cutoff.
    dropped: frozenset[int]
    #: Hour -> its new figures (as :attr:`days`, one window finer).
    hours: dict[int, DayFigures] = field(default_factory=dict)
    #: Hours to delete (as :attr:`dropped`).
    dropped_hours: frozenset[int] = frozenset()


def fold(spec: ChecksumSpec, current_days: dict[int, DayFigures],
         previous: dict[bytes, Contribution | None],
         winners: Iterable[tuple[bytes, Contribution | None]], cutoff: int,
         current_hours: dict[int, DayFigures] | None = None) -> FoldResult:
    """Fold new winners (in ``.unique`` order) into the day and hour figures.

    ``previous`` holds the stored contribution of every key among ``winners`` (None: no
    contribution). Days below ``cutoff`` (and their hours) are dropped and never touched
    again.
    """
    held = dict(previous)
    deltas: dict[int, _Delta] = {}
    hour_deltas: dict[int, _Delta] = {}
    for key, new in winners:
        old = held.get(key)
        if old is not None and old.day >= cutoff:
            deltas.setdefault(old.day, _Delta()).add(old, -1, spec)
            hour_deltas.setdefault(old.hour, _Delta()).add(old, -1, spec)
        if new is not None and new.day >= cutoff:
            deltas.setdefault(new.day, _Delta()).add(new, 1, spec)
            hour_deltas.setdefault(new.hour, _Delta()).add(new, 1, spec)
        held[key] = new
    entries = {k: v for k, v in held.items() if k not in previous or previous[k] is not v}
    days, dropped = _totals(spec, current_days, deltas, cutoff)
    hours, dropped_hours = _totals(spec, current_hours or {}, hour_deltas, cutoff * 24)
    return FoldResult(entries, days, dropped, hours, dropped_hours)


def _totals(spec: ChecksumSpec, current: dict[int, DayFigures], deltas: dict[int, _Delta],
            cutoff: int) -> tuple[dict[int, DayFigures], frozenset[int]]:
    """Windows changed by ``deltas`` and windows to delete (emptied or below ``cutoff``)."""
    out: dict[int, DayFigures] = {}
    dropped = {w for w in current if w < cutoff}
    for window, delta in deltas.items():
        total = current.get(window, DayFigures.zero(spec)) + delta.figures(spec)
        if total.rows == 0:
            dropped.add(window)
        else:
            out[window] = total
    return out, frozenset(w for w in dropped if w in current or w in deltas)


# ------------------------------------------------------------------- the store


class ChecksumStore:
    """The checksum table of one ``.unique`` partition; open on construction, then close."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        # The WAL stays on (module docstring): one WriteBatch is durable whole, across
        # every column family, without needing atomic flush.
        self._db: Rdict | None = Rdict(str(path), options)
        self._busy = threading.Lock()
        families = {}
        for name in (_DAYS, _HOURS, _META):
            try:
                families[name] = self._db.get_column_family(name)
            except Exception:  # noqa: BLE001 - rocksdict raises a bare Exception for a missing family
                families[name] = self._db.create_column_family(name, Options(raw_mode=True))
        self._days_cf, self._meta_cf = families[_DAYS], families[_META]
        self._hours_cf = families[_HOURS]
        self._days_handle = self._db.get_column_family_handle(_DAYS)
        self._hours_handle = self._db.get_column_family_handle(_HOURS)
        self._meta_handle = self._db.get_column_family_handle(_META)
        raw = self._meta_cf.get(_APPLIED)
        #: The next ``.unique`` offset to fold: everything below is applied.
        self.applied_offset: int = _OFFSET.unpack(raw)[0] if raw is not None else 0
        #: Day number -> figures, as stored (read once; kept current by :meth:`apply`).
        self.days: dict[int, DayFigures] = {
            _DAY.unpack(bytes(k))[0]: DayFigures.from_json(orjson.loads(bytes(v)))  # type: ignore[arg-type]  # raw mode: keys and values are bytes
            for k, v in self._days_cf.items()}
        #: Hour number -> figures, as stored.
        self.hours: dict[int, DayFigures] = {
            _DAY.unpack(bytes(k))[0]: DayFigures.from_json(orjson.loads(bytes(v)))  # type: ignore[arg-type]  # raw mode: keys and values are bytes
            for k, v in self._hours_cf.items()}

    def _open(self) -> Rdict:
        if self._db is None:
            raise ChecksumStoreClosedError(f"checksum store {self.path} is closed; its "
                                           "partition was revoked or the agent stopped")
        return self._db

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, Contribution | None]:
        """The stored contribution of each key (None: none); one multi-get."""
        if not keys:
            return {}
        with self._busy:
            found: list[bytes | None] = self._open()[list(keys)]  # type: ignore[assignment]  # a list index multi-gets
        return {k: decode_contribution(v) if v is not None else None
                for k, v in zip(keys, found, strict=True)}

    def apply(self, result: FoldResult, applied_offset: int) -> None:
        """Write a fold's changes and the offset they bring the table to, atomically."""
        batch = WriteBatch(raw_mode=True)
        for key, entry in result.entries.items():
            if entry is None:
                batch.delete(key)
            else:
                batch.put(key, encode_contribution(entry))
        for day, figures in result.days.items():
            batch.put(_DAY.pack(day), orjson.dumps(figures.to_json()), self._days_handle)
        for day in result.dropped:
            batch.delete(_DAY.pack(day), self._days_handle)
        for hour, figures in result.hours.items():
            batch.put(_DAY.pack(hour), orjson.dumps(figures.to_json()), self._hours_handle)
        for hour in result.dropped_hours:
            batch.delete(_DAY.pack(hour), self._hours_handle)
        batch.put(_APPLIED, _OFFSET.pack(applied_offset), self._meta_handle)
        with self._busy:
            self._open().write(batch)
            self.applied_offset = applied_offset
            self.days.update(result.days)
            for day in result.dropped:
                self.days.pop(day, None)
            self.hours.update(result.hours)
            for hour in result.dropped_hours:
                self.hours.pop(hour, None)

    def close(self) -> None:
        """Flush and close (after a write in progress); harmless twice."""
        with self._busy:
            db, self._db = self._db, None
        if db is not None:
            db.flush()
            # The family objects hold the database open (and its LOCK file) until dropped.
            del self._days_cf, self._meta_cf, self._days_handle, self._meta_handle
            del self._hours_cf, self._hours_handle
            db.close()

    def __enter__(self) -> ChecksumStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------ raw record counts


class RawCount(NamedTuple):
    """Raw records of one day (every source record placed there)."""

    #: Records (undecodable ones included).
    records: int = 0
    #: Of them, values that did not decode (placed by their Kafka timestamp).
    undecodable: int = 0

    def plus(self, other: RawCount) -> RawCount:
        return RawCount(self.records + other.records, self.undecodable + other.undecodable)

    def to_json(self) -> dict[str, int]:
        return {"records": self.records, "undecodable": self.undecodable}


def count_raw(current: dict[int, RawCount], placed: Iterable[tuple[int, bool]], cutoff: int
              ) -> tuple[dict[int, RawCount], frozenset[int]]:
    """Counts of the days ``placed`` (``(day, undecodable)`` per record) adds to, and the
    days to delete (below ``cutoff``: never counted again)."""
    added: dict[int, list[int]] = {}
    for day, bad in placed:
        if day >= cutoff:
            held = added.setdefault(day, [0, 0])
            held[0] += 1
            held[1] += bad
    changed = {day: current.get(day, RawCount()).plus(RawCount(n, u))
               for day, (n, u) in added.items()}
    return changed, frozenset(d for d in current if d < cutoff)


class RawCountStore:
    """Raw record counts of one source partition; open on construction, then close."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        db = Rdict(str(path), options)  # WAL on: one batch is durable whole
        self._db: Rdict | None = db
        self._busy = threading.Lock()
        raw: bytes | None = db.get(_APPLIED)
        #: The next source offset to count: everything below is counted.
        self.applied_offset: int = _OFFSET.unpack(raw)[0] if raw is not None else 0
        #: Day number -> counts, as stored (kept current by :meth:`apply`).
        self.days: dict[int, RawCount] = {}
        for k, v in db.items(from_key=b"d"):
            key: bytes = k  # type: ignore[assignment]  # raw mode: bytes
            if key.startswith(b"d"):
                self.days[_DAY.unpack(key[1:])[0]] = RawCount(*orjson.loads(v))

    def apply(self, days: dict[int, RawCount], dropped: Iterable[int], applied_offset: int
              ) -> None:
        """Write changed day counts, dropped days and the next offset, atomically."""
        gone = list(dropped)
        batch = WriteBatch(raw_mode=True)
        for day, count in days.items():
            batch.put(b"d" + _DAY.pack(day), orjson.dumps(list(count)))
        for day in gone:
            batch.delete(b"d" + _DAY.pack(day))
        batch.put(_APPLIED, _OFFSET.pack(applied_offset))
        with self._busy:
            if self._db is None:
                raise ChecksumStoreClosedError(f"raw count store {self.path} is closed")
            self._db.write(batch)
            self.applied_offset = applied_offset
            self.days.update(days)
            for day in gone:
                self.days.pop(day, None)

    def close(self) -> None:
        """Flush and close (after a write in progress); harmless twice."""
        with self._busy:
            db, self._db = self._db, None
        if db is not None:
            db.flush()
            db.close()
