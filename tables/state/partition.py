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
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

from onepipe.schemas.errors import ConfigError, StateError
from onepipe.tables.state.entries import (
    NONE,
    TableSpec,
    TableState,
    window_key,
    window_start,
)
from onepipe.tables.state.serde import decode_key, decode_value
from onepipe.tables.state.store import Position, StateStore

__all__ = ["CURRENT", "DEFAULT_CACHE_ENTRIES", "PartitionState", "activate"]

#: Decoded values each table keeps per partition between batches (module docstring).
DEFAULT_CACHE_ENTRIES = 65_536
class PartitionState:
    """One agent's tables of one input partition; one batch at a time (module docstring)."""

    __slots__ = ("_by_spec", "_late_at_commit", "_late_record", "_record_stream",
                 "_record_time", "_repairs",
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
        #: Stream time as of the current record (the late rule's reference).
        self._record_stream: int | None = self.stream_time_ms
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

    def set_record_time(self, time_ms: int | None, stream_ms: int | None = None) -> None:
        """The current record's partition time (epoch ms; None: it has none).

        ``stream_ms`` is the partition's stream time as of this record (the highest
        partition time up to and including it), when the caller knows it: a batch taken
        twice, or out of order, then judges each record as it arrived. Without it, stream
        time is the highest time set so far.
        """
        self._record_time = time_ms
        self._late_record = False
        if stream_ms is None and time_ms is not None:
            stream_ms = time_ms if self.stream_time_ms is None else max(time_ms,
                                                                         self.stream_time_ms)
        if stream_ms is not None and (self.stream_time_ms is None
                                      or stream_ms > self.stream_time_ms):
            self.stream_time_ms = stream_ms
        self._record_stream = stream_ms if stream_ms is not None else self.stream_time_ms

    def advance(self, time_ms: int) -> None:
        """Stream time to at least ``time_ms`` (the test kit's clock)."""
        if self.stream_time_ms is None or time_ms > self.stream_time_ms:
            self.stream_time_ms = self._record_stream = time_ms

    def open_window_keys(self, ts: TableState, key: bytes, time_ms: int | None = None
                         ) -> list[bytes]:
        """Cache keys of the open windows of ``ts`` holding ``time_ms`` (default: the
        current record's time), judged against the stream time as of the current record;
        none (and the record counted late, once) when all of them are closed."""
        spec = ts.spec
        window = spec.window
        assert window is not None
        if time_ms is None:
            time_ms = self._record_time
        if time_ms is None:
            raise StateError(f"window table {spec.name!r} of agent {self.agent} was used "
                             "without a record time: its topic needs a partition_time (or "
                             "the record a Kafka timestamp)")
        grace, stream = spec.grace_ms, self._record_stream
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
                    out.append((spec.to, spec.emit(decode_key(ck[8:]), window,
                                                   value)))
                ts.write(ck, NONE)
        return out

    # --- commit ---------------------------------------------------------------------

    def changes(self) -> list[tuple[bytes, bytes | None]]:
        """The batch's pending writes as changelog (key, value or None), each key once."""
        return list(self._drained().items())

    def _drained(self) -> dict[bytes, bytes | None]:
        out = self._serialized
        for ts in self._by_spec.values():
            if ts.dirty:
                ts.drain(out)
        return out

    def commit(self, next_offset: int, changelog_offset: int | None) -> None:
        """Pending writes and ``Position(next_offset, changelog_offset, stream time)`` in
        one WriteBatch (``changelog_offset`` None: the last one stays); clears pending."""
        changes = self._drained()
        position = Position(next_offset,
                            self.position.changelog_offset if changelog_offset is None
                            else changelog_offset, self.stream_time_ms)
        self.store.apply(changes.items(), position)
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
        self.stream_time_ms = self._record_stream = self.position.stream_time_ms
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
