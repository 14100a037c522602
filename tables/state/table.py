"""Tables: an agent's keyed state, declared at import time, used inside the agent.

Contract:
- ``Table(name, default=None)`` is a dict-like view of the current partition's entries
  (the :data:`~onepipe.tables.state.partition.CURRENT` state the runner set): ``t[k]``
  (a missing key gives ``default``: a value, or a zero-argument callable called each
  time; a list or dict default is stored, as ``defaultdict`` does), ``t[k] = v``,
  ``t[k] += 1``, ``get``, ``del`` (deleting a missing key is harmless), ``in``, ``items()``.
  Keys and values: onepipe.tables.state.serde.
- ``WindowTable(name, window, grace=timedelta(0), default=None, to=None, emit=None)``
  keeps a value per key and window (onepipe.tables.state.windows): ``add(key, amount)``
  and ``update(key, fn)`` change every *open* window holding the current record's time
  (a record whose windows are all closed is dropped and counted late); ``t[key]``
  (tumbling only) reads or sets the current record's window; ``get(key, window_start)``
  and ``windows(key)`` read open windows. When a window closes, ``emit(key, window,
  value)`` is sent to ``to`` (both or neither) and the window's entries are deleted.
- Outside an agent, or in an agent that did not declare the table, every use raises a
  :class:`~onepipe.schemas.errors.ConfigError` saying so.
- State survives restarts and moved partitions exactly once per record for updates that
  are functions of the records and the state (onepipe.tables.state.recovery).

Cost of ``counts[k] += 1`` (``.venv/bin/python bench/state_table.py``: 10,000 distinct
str keys, 1M operations in batches of 10,000, each batch committed; 2-core development
machine, best of 3): **~240 ns/op** for the update itself (one ContextVar read, dict
operations, no serialization); **~1,000 ns/op** with the commits, which serialize and
write each key changed in a batch once (~1.2 µs a changed key: orjson ~0.4, RocksDB
WriteBatch ~0.55): 6,300 distinct keys a batch here. On a hot key set the commit part
shrinks with the keys a batch changes (``--keys 1000``: ~365 ns/op in all).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from onepipe.schemas.errors import ConfigError
from onepipe.tables.state.changelog import table_prefix
from onepipe.tables.state.entries import IMMUTABLE, NONE, TableState, window_key, window_start
from onepipe.tables.state.partition import CURRENT, PartitionState
from onepipe.tables.state.serde import decode_key, decode_value, encode_key, encode_value
from onepipe.tables.state.windows import Window, WindowSpec, to_ms

__all__ = ["Table", "WindowTable"]

#: Keys used as cache keys as they are (TableState's docstring says why these two).
_FAST = frozenset({str, int})
_MISSING = object()
_current = CURRENT.get


def _bind_error(table: Table | WindowTable) -> ConfigError:
    return ConfigError(f"table {table.name!r} was used outside an agent: tables are used "
                       "inside an agent that declares them (tables=[...]), or in a test "
                       "through onepipe.testing.AgentTest")


class _Declared:
    """Name, default and the binding to the current partition's state."""

    __slots__ = ("_bound", "_copy_default", "_default", "_dirty", "_entries", "_factory", "_ts",
                 "name", "prefix")

    def __init__(self, name: str, default: Any) -> None:
        self.name = name
        self.prefix = table_prefix(name)
        self._factory: Callable[[], Any] | None = default if callable(default) else None
        self._default = default
        # A list or dict default is copied for each key, not shared between keys.
        self._copy_default = self._factory is None and default.__class__ not in IMMUTABLE
        if self._copy_default:
            encode_value(default)  # refuse a default that could not be stored, now
        #: The last state this table acted on and its TableState (one dict lookup saved
        #: per access); PartitionState.close unbinds it.
        self._bound: Any = NONE
        self._ts: TableState | None = None
        # ... and its dicts, read straight by the hot path.
        self._entries: dict[Any, Any] = {}
        self._dirty: dict[Any, None] = {}

    def default_value(self) -> Any:
        """A fresh default for a missing key."""
        if self._factory is not None:
            return self._factory()
        if self._copy_default:
            return decode_value(encode_value(self._default))
        return self._default

    def _bind(self, state: PartitionState | None) -> TableState:
        if state is None:
            raise _bind_error(self)  # type: ignore[arg-type]  # a Table or a WindowTable
        ts = state.state_of(self)  # type: ignore[arg-type]  # it is a TableSpec
        self._bound, self._ts, self._entries, self._dirty = state, ts, ts.entries, ts.dirty
        return ts

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Table(_Declared):
    """A keyed table of the current partition (module docstring)."""

    __slots__ = ()
    window: WindowSpec | None = None
    grace_ms = 0
    to: str | None = None
    emit: Callable[[Any, Window, Any], Any] | None = None

    def __init__(self, name: str, default: Any = None) -> None:
        super().__init__(name, default)

    # The two methods below are the hot path (``t[k] += 1`` is one of each): no call but
    # the ContextVar read and the dict operations unless the key is new to the cache.

    def __getitem__(self, key: Any) -> Any:
        if _current() is not self._bound:
            self._bind(_current())
        ck = key if key.__class__ in _FAST else TableState.cache_key(key)
        try:
            value = self._entries[ck]
        except KeyError:
            value = self._ts.load(ck)  # type: ignore[union-attr]  # bound just above
        if value.__class__ in IMMUTABLE:
            return value
        if value is NONE:
            value = self.default_value()
            if value.__class__ in IMMUTABLE:
                return value
        self._dirty[ck] = None  # mutable: it may be changed in place
        self._entries[ck] = value
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        if _current() is not self._bound:
            self._bind(_current())
        ck = key if key.__class__ in _FAST else TableState.cache_key(key)
        self._entries[ck] = value
        self._dirty[ck] = None

    def __delitem__(self, key: Any) -> None:
        self[key] = NONE

    def _ts_now(self) -> TableState:
        state = CURRENT.get()
        ts = self._ts if state is self._bound else self._bind(state)
        assert ts is not None
        return ts

    def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` (not the table's) when it has none."""
        ts = self._ts_now()
        value = ts.read(key if key.__class__ in _FAST else ts.cache_key(key))
        return default if value is NONE else value

    def __contains__(self, key: Any) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def items(self) -> list[tuple[Any, Any]]:
        """Every (key, value): stored entries merged with this batch's writes."""
        ts = self._ts_now()
        return [(ts.key_of(ck), value) for ck, value in ts.items()]


class WindowTable(_Declared):
    """A value per key and time window of the current partition (module docstring)."""

    __slots__ = ("emit", "grace_ms", "to", "window")

    def __init__(self, name: str, window: WindowSpec, grace: timedelta = timedelta(0),
                 default: Any = None, to: str | None = None,
                 emit: Callable[[Any, Window, Any], Any] | None = None) -> None:
        super().__init__(name, default)
        if not isinstance(window, WindowSpec):
            raise ConfigError(f"window table {name!r}: window must be onepipe.tumbling(...) "
                              f"or onepipe.hopping(...); got {window!r}")
        if grace < timedelta(0):
            raise ConfigError(f"window table {name!r}: grace must not be negative; got {grace}")
        if (to is None) != (emit is None):
            raise ConfigError(f"window table {name!r}: give both to= (the topic) and emit= "
                              "(key, window, value -> record), or neither")
        self.window = window
        self.grace_ms = grace // timedelta(milliseconds=1)
        self.to = to
        self.emit = emit

    def _open(self, key: Any, at: datetime | int | None = None
              ) -> tuple[TableState, list[bytes]]:
        state = CURRENT.get()
        ts = self._ts if state is self._bound else self._bind(state)
        assert ts is not None and state is not None
        time_ms = to_ms(at) if isinstance(at, datetime) else at
        return ts, state.open_window_keys(ts, encode_key(key), time_ms)

    def _value(self, ts: TableState, ck: bytes) -> Any:
        value = ts.read(ck)
        if value is NONE:
            value = self.default_value()
            if value.__class__ not in IMMUTABLE:
                ts.write(ck, value)
        return value

    def add(self, key: Any, amount: Any, *, at: datetime | int | None = None) -> None:
        """Add ``amount`` to ``key`` in every open window holding the record's time.

        The record's time is that of the value taken last from the batch or stream (so
        update windows while iterating); ``at`` (a datetime, or epoch ms) places the
        update at another time, judged late against the stream time as of that value.
        """
        ts, cks = self._open(key, at)
        for ck in cks:
            ts.write(ck, self._value(ts, ck) + amount)

    def update(self, key: Any, fn: Callable[[Any], Any], *,
               at: datetime | int | None = None) -> None:
        """Set ``key`` to ``fn(value)`` in every open window holding the record's time
        (or ``at``, as :meth:`add`)."""
        ts, cks = self._open(key, at)
        for ck in cks:
            ts.write(ck, fn(self._value(ts, ck)))

    def _tumbling_only(self) -> None:
        if not self.window.tumbling:
            raise ConfigError(f"window table {self.name!r} is hopping: a record is in "
                              "several windows; use add(), update() or get(key, window_start)")

    def __getitem__(self, key: Any) -> Any:
        """``key``'s value in the current record's window (tumbling tables only)."""
        self._tumbling_only()
        ts, cks = self._open(key)
        return self._value(ts, cks[0]) if cks else self.default_value()

    def __setitem__(self, key: Any, value: Any) -> None:
        self._tumbling_only()
        ts, cks = self._open(key)
        for ck in cks:
            ts.write(ck, value)

    def _now(self) -> tuple[TableState, PartitionState]:
        state = CURRENT.get()
        ts = self._ts if state is self._bound else self._bind(state)
        assert ts is not None and state is not None
        return ts, state

    def get(self, key: Any, window_start: datetime) -> Any:
        """``key``'s value in the window starting at ``window_start`` (default if none)."""
        ts, _ = self._now()
        value = ts.read(window_key(to_ms(window_start), encode_key(key)))
        return self.default_value() if value is NONE else value

    def windows(self, key: Any) -> dict[Window, Any]:
        """``key``'s value in every open window that holds one (one multi-get)."""
        ts, state = self._now()
        if state.stream_time_ms is None:
            return {}
        starts = self.window.open_starts(self.grace_ms, state.stream_time_ms)
        raw = encode_key(key)
        values = ts.read_many([window_key(s, raw) for s in starts])
        return {self.window.window(s): v for s, v in zip(starts, values, strict=True)
                if v is not NONE}

    def items(self) -> list[tuple[tuple[Any, Window], Any]]:
        """Every ((key, window), value) the table holds, closed-but-not-yet-emitted
        windows included, in window then key order."""
        ts, _ = self._now()
        return [((decode_key(ck[8:]), self.window.window(window_start(ck))), value)
                for ck, value in sorted(ts.items())]
