"""The entries of one table in one partition: decoded-value cache, the batch's writes, RocksDB.

The working part of onepipe.tables.state.partition (its docstring states the contract):
cache keys, reads through the cache, serialization of a batch's writes at commit, the
cache bound.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any, Protocol

import orjson

from onepipe.schemas.errors import StateError
from onepipe.tables.state.serde import (
    VALUE_OPTIONS,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)
from onepipe.tables.state.store import StateStore
from onepipe.tables.state.windows import Window, WindowSpec

__all__ = ["IMMUTABLE", "NONE", "TableSpec", "TableState", "window_key", "window_start"]

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

    __slots__ = ("dirty", "entries", "flushed", "keys", "prefix", "spec", "store")

    def __init__(self, spec: TableSpec, store: StateStore) -> None:
        self.spec = spec
        self.prefix = spec.prefix
        self.store = store
        #: ck -> decoded value, or NONE.
        self.entries: dict[Any, Any] = {}
        #: cks written (or read as mutable) since the last ``changes()``.
        self.dirty: dict[Any, None] = {}
        #: ck -> entry key bytes, kept with ``entries``: a key is serialized once while
        #: it is cached, not at every commit.
        self.keys: dict[Any, bytes] = {}
        #: (ck, entry key) of list and dict values serialized since the last commit.
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
        entries, prefix, flushed, keys = self.entries, self.prefix, self.flushed, self.keys
        dumps, options = orjson.dumps, VALUE_OPTIONS
        for ck in self.dirty:
            key = keys.get(ck)
            if key is None:
                key = keys[ck] = prefix + (ck if type(ck) is bytes else encode_key(ck))
            value = entries[ck]
            if value.__class__ in IMMUTABLE:
                try:
                    out[key] = dumps(value, option=options)
                except orjson.JSONEncodeError:  # an int beyond 64 bits
                    out[key] = self._encode(ck, value)
            elif value is NONE:
                out[key] = None
            else:
                out[key] = self._encode(ck, value)
                flushed.append((ck, key))
        self.dirty.clear()

    def _encode(self, ck: Any, value: Any) -> bytes:
        try:
            return encode_value(value)
        except StateError as exc:
            raise StateError(f"table {self.spec.name!r}, key {self.key_of(ck)!r}: "
                             f"{exc}") from exc

    def committed(self, written: dict[bytes, bytes | None], bound: int) -> None:
        """After a commit: cached values as RocksDB returns them; the cache bounded."""
        entries, keys = self.entries, self.keys
        for ck, key in self.flushed:
            raw = written[key]
            entries[ck] = NONE if raw is None else decode_value(raw)
        self.flushed.clear()
        if len(entries) > bound:
            # Oldest first (insertion order): a FIFO, not an LRU; an entry dropped while
            # still hot costs one RocksDB get when it is used again.
            for ck in list(islice(entries, len(entries) - bound * 3 // 4)):
                del entries[ck]
                keys.pop(ck, None)

    def discarded(self) -> None:
        """After a failed batch: forget its writes. The whole cache goes (failures are
        rare; the hot path keeps no list of what it wrote besides ``dirty``, which
        ``changes()`` may already have drained)."""
        self.entries.clear()
        self.keys.clear()
        self.dirty.clear()
        self.flushed.clear()
