"""The state store of one agent and input partition: its tables' entries and its Position.

Contract:
- One RocksDB database (raw mode) per agent and input partition. The default column
  family holds the entries of every table of the agent (key: onepipe.tables.state.changelog
  ``entry_key``); the column family ``meta`` holds the :class:`Position` (apart, so no
  entry can collide with it).
- The store is a *cache of its changelog*: :meth:`StateStore.apply` writes a batch's
  entries together with the position they bring the store to in one ``WriteBatch``. So
  after any crash the database holds exactly the state at some committed position, and
  reading the changelog from ``position.changelog_offset`` brings it up to date
  (onepipe.tables.state.recovery). Deleting the folder is always safe: recovery then
  reads the whole changelog.
- Writes skip RocksDB's write-ahead log: a crash may lose the latest batches, but never
  half of one, and the position goes back with the state it belongs to (both column
  families flush atomically, so neither can be ahead of the other). ``close`` flushes.
- A closed store refuses use (:class:`~onepipe.schemas.errors.StateError`); closing twice
  is harmless.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
from rocksdict import Rdict, WriteBatch

from onepipe.schemas.errors import StateError
from onepipe.tables.unlogged_store import UnloggedStore

__all__ = ["Position", "StateStore"]

_POSITION = b"position"
#: Memtable of the entries: a batch's reads of recently written keys stay in memory.
_MEMTABLE = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Position:
    """How far one agent's state of one input partition has got."""

    #: The next input offset to read: every record below it is in the state.
    next_offset: int = 0
    #: The next changelog offset to fold in on recovery: everything below it is applied.
    changelog_offset: int = 0
    #: Stream time: the highest partition time (epoch ms) of the records below
    #: ``next_offset``; None before the first record with a time.
    stream_time_ms: int | None = None


def _encode_position(position: Position) -> bytes:
    return orjson.dumps([position.next_offset, position.changelog_offset,
                         position.stream_time_ms])


def _decode_position(data: bytes) -> Position:
    next_offset, changelog_offset, stream_time_ms = orjson.loads(data)
    return Position(next_offset, changelog_offset, stream_time_ms)


class StateStore:
    """The entries and position of one agent + input partition; open on construction."""

    __slots__ = ("_store", "discarded", "path",
                 "position")

    def __init__(self, path: Path) -> None:
        self.path = path
        #: Keys of changelog entries recovery read after the last marker and discarded
        #: (a batch whose commit did not finish); onepipe.tables.state.partition writes
        #: them again with their committed values at the next commit (recovery.py says why).
        self.discarded: tuple[bytes, ...] = ()
        self._store: UnloggedStore | None = None
        self._open_db()

    def _open_db(self) -> None:
        store = UnloggedStore(self.path, memtable_bytes=_MEMTABLE)
        raw = store.meta.get(_POSITION)
        #: The durable position (what the entries in the store add up to).
        self.position: Position = _decode_position(raw) if raw is not None else Position()
        self._store = store

    def _open(self) -> Rdict:
        return self._open_store().db

    def _open_store(self) -> UnloggedStore:
        if self._store is None:
            raise StateError(f"state store {self.path} is closed; its partition was revoked "
                             "or the agent stopped")
        return self._store

    def get(self, key: bytes) -> bytes | None:
        """The stored value of ``key``; None when it has none."""
        value: bytes | None = self._open().get(key)
        return value

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The stored value of each key (None where none); one multi-get."""
        if not keys:
            return []
        found: list[bytes | None] = self._open()[list(keys)]  # type: ignore[assignment]  # a list index multi-gets
        return found

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every entry whose key starts with ``prefix``, in key (byte) order."""
        key: bytes  # raw mode: keys and values are bytes (the stub says any key type)
        value: bytes
        for key, value in self._open().items(from_key=prefix):  # type: ignore[assignment]
            if not key.startswith(prefix):
                return
            yield key, value

    def apply(self, changes: Iterable[tuple[bytes, bytes | None]], position: Position) -> None:
        """Write ``changes`` (None: delete) and ``position`` in one ``WriteBatch``."""
        store = self._open_store()
        batch = WriteBatch(raw_mode=True)
        put, delete = batch.put, batch.delete
        for key, value in changes:
            if value is None:
                delete(key)
            else:
                put(key, value)
        put(_POSITION, _encode_position(position), store.meta_handle)
        store.db.write(batch, store.write_options)
        self.position = position

    def reset(self) -> None:
        """Forget everything: the folder is deleted and the store opened again, empty
        (position 0). For a stale store (recovery.py) while its owner keeps the object."""
        self.destroy()
        self.discarded = ()
        self._open_db()

    def close(self) -> None:
        """Flush and close; harmless twice."""
        store, self._store = self._store, None
        if store is not None:
            store.close()  # entries, then the position (onepipe.tables.unlogged_store)

    def destroy(self) -> None:
        """Close and delete the folder (a stale store); harmless on a closed store."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
