"""One agent's table state of one input partition, between two commits.

Contract:
- A :class:`PartitionState` owns its :class:`~onepipe.tables.state.store.StateStore`
  (``close`` closes it). Tables act on the state in :data:`CURRENT` (set with
  :func:`activate` by the runner or the test kit); a table the agent did not declare, or
  any table outside an agent, raises a :class:`~onepipe.schemas.errors.ConfigError`.
- Writes of a batch are *pending* until :meth:`PartitionState.commit` writes them with
  the new :class:`Position` in one ``WriteBatch``; :meth:`PartitionState.changes` lists
  them (changelog key, value bytes or None) for the changelog first. :meth:`discard`
  forgets them, and the stream time and late count of the failed batch with them, so a
  batch read again counts exactly once.
- Reads see the batch's own writes, then the decoded-value cache, then RocksDB. A value
  read from a table that is a list or dict counts as written (it may be changed in
  place), so an in-place change is stored as an assignment would be. After a commit the
  cache holds values as RocksDB gives them back (tuples as lists), so what a batch reads
  never depends on whether the worker restarted before it.
- **The cache bound**: each table keeps at most ``cache_entries`` decoded values per
  partition between batches (default 65,536: ~8 MiB of short keys and numbers); above
  it, the oldest entries are dropped at commit (down to three quarters) and read from
  RocksDB again when used. During a batch the cache also holds every key the batch
  touched, so a batch's memory is bounded by its own size.
- Window tables: :meth:`set_record_time` before each record's user code sets the record
  time and raises stream time; :meth:`close_windows` closes every window with
  ``end + grace <= stream_time`` (onepipe.tables.state.windows): its ``emit`` record,
  when the table has one, is returned for its ``to`` topic and its entries are deleted.
- After recovery discarded a trailing partial batch (onepipe.tables.state.recovery), the
  next commit writes the committed values of its keys again (``changes`` begins with
  them), so the changelog no longer holds a value no commit made.
"""

from __future__ import annotations

import contextvars
import struct
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from itertools import islice
from typing import Any, Protocol

from onepipe.schemas.errors import ConfigError, StateError
from onepipe.tables.state.serde import decode_key, decode_value, encode_key, encode_value
from onepipe.tables.state.store import Position, StateStore
from onepipe.tables.state.windows import Window, WindowSpec

__all__ = ["CURRENT", "DEFAULT_CACHE_ENTRIES", "NONE", "PartitionState", "TableSpec",
           "TableState", "activate"]

#: Decoded values each table keeps per partition between batches (module docstring).
DEFAULT_CACHE_ENTRIES = 65_536
#: A cached "no value" (never stored, or deleted in this batch).
NONE: Any = type("NoValue", (), {"__repr__": lambda self: "NONE", "__slots__": ()})()
#: Values a caller cannot change in place.
IMMUTABLE = frozenset({int, float, str, bool, type(None)})
# Window entries start with the window start, big-endian and shifted to unsigned so byte
# order is time order: closing windows is a scan from the table's prefix that stops at
# the first open one.
_START = struct.Struct(">Q")
_SHIFT = 2**63


class TableSpec(Protocol):
    """What a state needs to know of a table (Table and WindowTable are ones)."""

    @property
    def name(self) -> str: ...
    @property
    def prefix(self) -> bytes: ...
    @property
    def window(self) -> WindowSpec | None: ...
    @property
    def grace_ms(self) -> int: ...
    @property
    def to(self) -> str | None: ...
    @property
    def emit(self) -> Callable[[Any, Window, Any], Any] | None: ...

    def default_value(self) -> Any: ...


def window_key(start_ms: int, key: bytes) -> bytes:
    """The cache (and entry key suffix) of ``key`` (serialized) in one window."""
    return _START.pack(start_ms + _SHIFT) + key


def window_start(ck: bytes) -> int:
    """Inverse of :func:`window_key`'s first part."""
    return int(_START.unpack_from(ck)[0]) - _SHIFT


class TableState:
    """One table's entries of one partition: cache, the batch's writes, the store.

    Cache keys (``ck``) are the table key itself for exact ``str`` and ``int`` keys (the
    hot path serializes nothing: among those, equal keys have equal bytes) and the key's
    bytes for every other key; window tables use :func:`window_key` bytes.
    """

    __slots__ = ("dirty", "entries", "flushed", "prefix", "spec", "store")

    def __init__(self, spec: TableSpec, store: StateStore) -> None:
        self.spec = spec
        self.prefix = spec.prefix
        self.store = store
        #: ck -> decoded value, or NONE.
        self.entries: dict[Any, Any] = {}
        #: cks written (or read as mutable) since the last ``changes()``.
        self.dirty: dict[Any, None] = {}
        #: (ck, entry key) serialized by ``changes()`` since the last commit.
        self.flushed: list[tuple[Any, bytes]] = []

    @staticmethod
    def cache_key(key: Any) -> Any:
        """The cache key of a key that is not an exact ``str`` or ``int``."""
        if isinstance(key, str):
            return str.__str__(key)  # a str subclass (an enum): the plain string
        if isinstance(key, int) and not isinstance(key, bool):
            return int.__int__(key)
        return encode_key(key)

    def load(self, ck: Any) -> Any:
        """Read ``ck`` from RocksDB into the cache; its value or NONE."""
        raw = self.store.get(self.prefix + (ck if type(ck) is bytes else encode_key(ck)))
        value = NONE if raw is None else decode_value(raw)
        self.entries[ck] = value
        return value

    def read(self, ck: Any) -> Any:
        """The value of ``ck`` (NONE when it has none); a mutable one counts as written."""
        try:
            value = self.entries[ck]
        except KeyError:
            value = self.load(ck)
        if value.__class__ not in IMMUTABLE and value is not NONE:
            self.dirty[ck] = None
        return value

    def read_many(self, cks: Sequence[Any]) -> list[Any]:
        """:meth:`read` of many keys, the cache misses in one multi-get."""
        entries = self.entries
        missing = [ck for ck in cks if ck not in entries]
        if missing:
            found = self.store.get_many([self.prefix + (ck if type(ck) is bytes else
                                                        encode_key(ck)) for ck in missing])
            for ck, raw in zip(missing, found, strict=True):
                entries[ck] = NONE if raw is None else decode_value(raw)
        return [self.read(ck) for ck in cks]

    def write(self, ck: Any, value: Any) -> None:
        self.entries[ck] = value
        self.dirty[ck] = None

    def key_of(self, ck: Any) -> Any:
        """The table key of a (non-window) cache key."""
        return decode_key(ck) if type(ck) is bytes else ck

    def ck_of_suffix(self, suffix: bytes) -> Any:
        """The cache key of a stored entry's key suffix."""
        if self.spec.window is not None:
            return suffix
        key = decode_key(suffix)
        return key if key.__class__ is str or key.__class__ is int else suffix

    def items(self) -> list[tuple[Any, Any]]:
        """(ck, value) of every entry: RocksDB merged with the cache, in key-byte order
        for stored entries, then the batch's new ones."""
        result: dict[Any, Any] = {}
        entries, size = self.entries, len(self.prefix)
        for key, raw in self.store.scan(self.prefix):
            ck = self.ck_of_suffix(key[size:])
            value = entries.get(ck, entries)
            result[ck] = decode_value(raw) if value is entries else value
        for ck, value in entries.items():
            if ck not in result:
                result[ck] = value
        return [(ck, v) for ck, v in result.items() if v is not NONE]

    def drain(self, out: dict[bytes, bytes | None]) -> None:
        """Serialize the dirty entries into ``out`` (entry key -> bytes or None)."""
        entries, prefix, flushed = self.entries, self.prefix, self.flushed
        for ck in self.dirty:
            key = prefix + (ck if type(ck) is bytes else encode_key(ck))
            value = entries[ck]
            try:
                out[key] = None if value is NONE else encode_value(value)
            except StateError as exc:
                raise StateError(f"table {self.spec.name!r}, key {self.key_of(ck)!r}: "
                                 f"{exc}") from exc
            flushed.append((ck, key))
        self.dirty.clear()

    def committed(self, written: dict[bytes, bytes | None], bound: int) -> None:
        """After a commit: cached values as RocksDB returns them; the cache bounded."""
        entries = self.entries
        for ck, key in self.flushed:
            value = entries[ck]
            if value.__class__ not in IMMUTABLE and value is not NONE:
                raw = written[key]
                entries[ck] = NONE if raw is None else decode_value(raw)
        self.flushed.clear()
        if len(entries) > bound:
            # Oldest first (insertion order): a FIFO, not an LRU; an entry dropped while
            # still hot costs one RocksDB get when it is used again.
            for ck in list(islice(entries, len(entries) - bound * 3 // 4)):
                del entries[ck]

    def discarded(self) -> None:
        """After a failed batch: forget its writes (cached values included)."""
        for ck in self.dirty:
            self.entries.pop(ck, None)
        for ck, _ in self.flushed:
            self.entries.pop(ck, None)
        self.dirty.clear()
        self.flushed.clear()


class PartitionState:
    """One agent's tables of one input partition; one batch at a time (module docstring)."""

    __slots__ = ("_by_spec", "_late_at_commit", "_late_record", "_record_time", "_repairs",
                 "_serialized", "agent", "cache_entries", "late", "position", "store",
                 "stream_time_ms", "tables")

    def __init__(self, store: StateStore, tables: Sequence[TableSpec], *, agent: str,
                 cache_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        names = [t.name for t in tables]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"agent {agent} declares two tables named {twice[0]!r}: table "
                              "names must be unique within an agent")
        self.store = store
        self.tables = tuple(tables)
        self.agent = agent
        self.cache_entries = cache_entries
        #: The durable position (after recovery / the last commit).
        self.position: Position = store.position
        #: Highest partition time seen, the current batch's records included.
        self.stream_time_ms: int | None = store.position.stream_time_ms
        #: Records window tables dropped as late (cumulative; a failed batch's taken back).
        self.late = 0
        self._late_at_commit = 0
        self._record_time: int | None = None
        self._late_record = False
        self._by_spec: dict[int, TableState] = {id(t): TableState(t, store) for t in tables}
        self._repairs: dict[bytes, bytes | None] = {
            key: value for key, value in zip(store.discarded,
                                             store.get_many(store.discarded), strict=True)}
        self._serialized: dict[bytes, bytes | None] = dict(self._repairs)

    def state_of(self, table: TableSpec) -> TableState:
        """The state of ``table`` here; ConfigError when the agent did not declare it."""
        found = self._by_spec.get(id(table))
        if found is None or found.spec is not table:
            declared = ", ".join(repr(t.name) for t in self.tables) or "none"
            raise ConfigError(f"agent {self.agent} did not declare table {table.name!r}: add "
                              f"it to tables=[...] (declared: {declared})")
        return found

    # --- time -----------------------------------------------------------------------

    def set_record_time(self, time_ms: int | None) -> None:
        """The current record's partition time (epoch ms; None: it has none)."""
        self._record_time = time_ms
        self._late_record = False
        if time_ms is not None and (self.stream_time_ms is None or time_ms > self.stream_time_ms):
            self.stream_time_ms = time_ms

    def advance(self, time_ms: int) -> None:
        """Stream time to at least ``time_ms`` (the test kit's clock)."""
        if self.stream_time_ms is None or time_ms > self.stream_time_ms:
            self.stream_time_ms = time_ms

    def open_window_keys(self, ts: TableState, key: bytes) -> list[bytes]:
        """Cache keys of the open windows of ``ts`` holding the current record's time;
        none (and the record counted late, once) when all of them are closed."""
        spec = ts.spec
        window = spec.window
        assert window is not None
        time_ms = self._record_time
        if time_ms is None:
            raise StateError(f"window table {spec.name!r} of agent {self.agent} was used "
                             "without a record time: its topic needs a partition_time (or "
                             "the record a Kafka timestamp)")
        grace, stream = spec.grace_ms, self.stream_time_ms
        found = [window_key(s, key) for s in window.starts(time_ms)
                 if window.is_open(s, grace, stream)]
        if not found and not self._late_record:
            self._late_record = True
            self.late += 1
        return found

    def close_windows(self) -> list[tuple[str, Any]]:
        """Close every window with ``end + grace <= stream_time``: (to topic, emitted
        record) of each one whose table emits, in window then key order; its entries'
        deletes are pending."""
        out: list[tuple[str, Any]] = []
        stream = self.stream_time_ms
        if stream is None:
            return out
        for ts in self._by_spec.values():
            spec = ts.spec
            if spec.window is None:
                continue
            limit = spec.window.last_closed_start(spec.grace_ms, stream)
            entries, size = ts.entries, len(ts.prefix)
            found: dict[bytes, Any] = {}
            for key, raw in self.store.scan(ts.prefix):
                ck = key[size:]
                if window_start(ck) > limit:
                    break
                value = entries.get(ck, entries)
                found[ck] = decode_value(raw) if value is entries else value
            for ck in ts.dirty:
                if ck not in found and window_start(ck) <= limit:
                    found[ck] = entries[ck]
            for ck in sorted(found):
                value = found[ck]
                if value is NONE:
                    continue
                if spec.emit is not None and spec.to is not None:
                    window = spec.window.window(window_start(ck))
                    out.append((spec.to, spec.emit(decode_key(ck[_START.size:]), window,
                                                   value)))
                ts.write(ck, NONE)
        return out

    # --- commit ---------------------------------------------------------------------

    def changes(self) -> list[tuple[bytes, bytes | None]]:
        """The batch's pending writes as changelog (key, value or None), each key once."""
        out = self._serialized
        for ts in self._by_spec.values():
            if ts.dirty:
                ts.drain(out)
        return list(out.items())

    def commit(self, next_offset: int, changelog_offset: int | None) -> None:
        """Pending writes and ``Position(next_offset, changelog_offset, stream time)`` in
        one WriteBatch (``changelog_offset`` None: the last one stays); clears pending."""
        changes = self.changes()
        position = Position(next_offset,
                            self.position.changelog_offset if changelog_offset is None
                            else changelog_offset, self.stream_time_ms)
        self.store.apply(changes, position)
        self.position = position
        written = self._serialized
        for ts in self._by_spec.values():
            ts.committed(written, self.cache_entries)
        self._repairs.clear()
        self.store.discarded = ()
        self._serialized = {}
        self._late_at_commit = self.late

    def discard(self) -> None:
        """Forget the batch: its writes, its stream time, its late records."""
        for ts in self._by_spec.values():
            ts.discarded()
        self._serialized = dict(self._repairs)
        self.stream_time_ms = self.position.stream_time_ms
        self.late = self._late_at_commit
        self._record_time = None

    def close(self) -> None:
        """Close the store (pending writes are dropped); harmless twice."""
        for table in self.tables:
            # A table remembers the last state it acted on (table.py); not this one now.
            if getattr(table, "_bound", None) is self:
                table._bound = NONE  # type: ignore[attr-defined]  # Table's binding cache
        self.store.close()


#: The state tables act on: set by the runner (per batch / per record) or the test kit.
CURRENT: ContextVar[PartitionState | None] = ContextVar("onepipe_table_state", default=None)


def activate(state: PartitionState) -> contextvars.Token[PartitionState | None]:
    """Make ``state`` the one tables act on; undo with ``CURRENT.reset(token)``."""
    return CURRENT.set(state)
