"""The checksum tables' storage: one RocksDB database per partition, exactly once.

Contract:

- :class:`ChecksumStore`: one database per ``<topic>.unique`` partition, at
  ``<root>/<topic>/<partition>``. Four column families: the default one maps a winner's
  Kafka key (the canonical key bytes) to its contribution (onepipe.tables.checksum.fold);
  ``days`` maps a day number (4 bytes, big-endian) to that day's
  :class:`~onepipe.schemas.figures.DayFigures` (JSON); ``hours`` maps an hour number
  (onepipe.schemas.partition_day.partition_hours, 4 bytes) to that hour's figures (a
  day's figures are the sum of its hours'); ``meta`` holds the next ``.unique`` offset to
  fold (:attr:`ChecksumStore.applied_offset`).
- :meth:`ChecksumStore.apply` writes a :class:`~onepipe.tables.checksum.fold.FoldResult`
  - the changed contributions, the changed days and hours - and the applied offset in
  **one** ``WriteBatch``, with the write-ahead log on: after any crash the database holds
  the fold of a prefix of ``.unique``, never half a batch, and the reader resumes at the
  applied offset (exactly-once by construction). Deleting the folder is always safe: the
  fold restarts from offset 0.
- Dropped days' per-key entries stay until the key changes again (known gap: no per-day
  key index to delete them by). Contributions written before hour windows existed carry
  no hour and are taken as hour 00 of their day (delete the data dir to rebuild).
- :class:`RawCountStore`: the raw record count of one **source** partition, per day, and
  the next source offset to count, one ``WriteBatch`` per batch (exactly-once like the
  fold). It lives at ``<root>/<topic>/raw/<partition>``, apart from the fold, since the
  group may assign a source partition and its ``.unique`` partition to different members.
- A closed store refuses use (:class:`ChecksumStoreClosedError`); closing twice is
  harmless. Writes and reads may run in a worker thread (rocksdict releases the GIL);
  they take turns with ``close``.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson
from rocksdict import Options, Rdict, WriteBatch

from onepipe.schemas.errors import OnepipeError
from onepipe.schemas.figures import DayFigures
from onepipe.tables.checksum.fold import Contribution, FoldResult, RawCount
from onepipe.tables.state_memory import bounded, open_with_families

__all__ = ["ChecksumStore", "ChecksumStoreClosedError", "RawCountStore",
           "decode_contribution", "encode_contribution"]

_DAYS = "days"
_HOURS = "hours"
_META = "meta"
_APPLIED = b"applied"
_OFFSET = struct.Struct(">q")
_DAY = struct.Struct(">i")
_SPECIAL = ("inf", "-inf", "nan")


class ChecksumStoreClosedError(OnepipeError):
    """A checksum store was used after it was closed (its partition was revoked)."""

    code = "store_closed"


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


class ChecksumStore:
    """The checksum table of one ``.unique`` partition; open on construction, then close."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        # The WAL stays on (module docstring): one WriteBatch is durable whole, across
        # every column family, without needing atomic flush.
        self._db: Rdict | None = open_with_families(path, bounded(options),
                                                    (_DAYS, _HOURS, _META))
        self._busy = threading.Lock()
        families = {name: self._db.get_column_family(name) for name in (_DAYS, _HOURS, _META)}
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


class RawCountStore:
    """Raw record counts of one source partition; open on construction, then close."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        db = Rdict(str(path), bounded(options))  # WAL on: one batch is durable whole
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
