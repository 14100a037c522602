"""What an agent's code holds: :class:`Stream` (per record), :class:`Batch` (per batch),
the :class:`Record` envelopes of their values, and the :class:`Outbox` their sends fill.

A send is validated and encoded at once, exactly as the produce endpoint does
(onepipe.sinks.publish.publisher ``TopicWriter.encode``), so a bad record raises
:class:`~onepipe.schemas.errors.RecordValidationError` into the agent's code where it
was made; the encoded records wait in the outbox until the batch commits
(onepipe.agents.framework.runner), which produces them before anything else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from onepipe.schemas.errors import ConfigError
from onepipe.schemas.typed import to_record
from onepipe.sinks.publish.publisher import TopicWriter
from onepipe.tables.state import CURRENT, PartitionState

__all__ = ["Batch", "Decoded", "Outbox", "Record", "Stream"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Record:
    """The envelope of one value an agent receives: where it came from, as decoded."""

    #: Source topic.
    topic: str
    #: Source partition.
    partition: int
    #: Offset in the partition.
    offset: int
    #: Kafka record timestamp, epoch milliseconds.
    timestamp_ms: int
    #: Raw key bytes (the encoded unique key), or None.
    key: bytes | None
    #: The value as a dict shaped by the topic's reader schema (latest version).
    value: dict[str, Any]
    #: The id of the schema the producer wrote with.
    schema_id: int


class Decoded:
    """One partition batch as the processor hands it over (not public): what the agent's
    code receives, in offset order, with each value's partition time; the envelopes are
    built only when asked for (``batch.records``, ``stream.current``: rarely used)."""

    __slots__ = ("_dicts", "_envelopes", "_read", "_schema_ids", "raws", "streams", "times",
                 "values")

    def __init__(self, raws: Sequence[Any], values: list[Any], times: list[int | None],
                 schema_ids: list[int] | int, dicts: list[dict[str, Any]] | None,
                 read: Callable[[Any], dict[str, Any]] | None = None) -> None:
        #: The records the values come from (the processor's RawRecord).
        self.raws = raws
        #: What the agent's code receives: the dicts, or the ``record=`` type's instances.
        self.values = values
        #: The partition time of each value, epoch ms (None: the record has none).
        self.times = times
        #: The stream time as of each value (the highest partition time up to it), for
        #: window tables' late rule; set by the processor when a window table reads it.
        self.streams: list[int | None] | None = None
        self._schema_ids = schema_ids
        #: The values as decoded dicts when known; else ``read(raw)`` decodes one.
        self._dicts = dicts
        self._read = read
        self._envelopes: dict[int, Record] = {}

    def __len__(self) -> int:
        return len(self.values)

    def record(self, index: int) -> Record:
        """The envelope of value ``index`` (the same object each time)."""
        found = self._envelopes.get(index)
        if found is None:
            r = self.raws[index]
            if self._dicts is not None:
                value = self._dicts[index]
            else:
                assert self._read is not None
                value = self._read(r)
            ids = self._schema_ids
            found = self._envelopes[index] = Record(
                r.topic, r.partition, r.offset, r.timestamp, r.key, value,
                ids if isinstance(ids, int) else ids[index])
        return found


class Outbox:
    """The validated, encoded sends of the batch in progress, by topic."""

    def __init__(self, agent: str, sends: Sequence[str],
                 writer: Callable[[str], TopicWriter]) -> None:
        self._agent = agent
        self._sends = frozenset(sends)
        self._declared = list(sends)
        self._writer = writer
        self.pending: dict[str, list[tuple[bytes | None, bytes]]] = {}

    def send(self, topic: str, values: Any) -> None:
        if topic not in self._sends:
            raise ConfigError(f"agent {self._agent!r} sends to {topic!r}, which it did not "
                              f"declare (sends={self._declared}); add it to sends=[...]")
        self.add(topic, values)

    def add(self, topic: str, values: Any) -> None:
        """Validate and encode ``values`` (one value or a list) for ``topic`` now."""
        batch = list(values) if isinstance(values, list | tuple) else [values]
        records = [to_record(v) for v in batch]  # typed values (datetimes too) to JSON form
        encoded = self._writer(topic).encode(records)
        self.pending.setdefault(topic, []).extend(encoded)

    def take(self) -> dict[str, list[tuple[bytes | None, bytes]]]:
        pending, self.pending = self.pending, {}
        return pending

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.pending.values())


class Batch(Sequence[T], Generic[T]):
    """The values of one batch of ONE topic-partition, in offset order.

    Taking a value (iterating, or by index) makes its record the current one: window
    tables place what the code adds next at that record's partition time.
    """

    __slots__ = ("_decoded", "_outbox", "_state", "_timed", "partition", "topic")

    def __init__(self, topic: str, partition: int, decoded: Decoded, outbox: Outbox,
                 state: PartitionState | None, *, timed: bool = True) -> None:
        #: The topic and partition every value of the batch comes from.
        self.topic = topic
        self.partition = partition
        self._decoded = decoded
        self._outbox = outbox
        self._state = state
        # Record times matter to window tables only; without one the processor raises
        # stream time once for the batch and values are taken as they are.
        self._timed = timed and state is not None

    @property
    def records(self) -> list[Record]:
        """The envelopes of the values, in the same order."""
        decoded = self._decoded
        return [decoded.record(i) for i in range(len(decoded))]

    def __len__(self) -> int:
        return len(self._decoded.values)

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[T]: ...

    def __getitem__(self, index: int | slice) -> T | Sequence[T]:
        values = self._decoded.values
        if isinstance(index, slice):
            return values[index]
        value: T = values[index]
        if self._timed:
            decoded = self._decoded
            self._state.set_record_time(  # type: ignore[union-attr]  # timed: a state
                decoded.times[index], decoded.streams[index] if decoded.streams else None)
        return value

    def __iter__(self) -> Iterator[T]:
        if not self._timed:
            return iter(self._decoded.values)
        return self._timed_iter()

    def _timed_iter(self) -> Iterator[T]:
        set_time = self._state.set_record_time  # type: ignore[union-attr]  # timed: a state
        decoded = self._decoded
        streams = decoded.streams or [None] * len(decoded.times)
        for value, time_ms, stream_ms in zip(decoded.values, decoded.times, streams,
                                             strict=True):
            set_time(time_ms, stream_ms)
            yield value

    async def send(self, topic: str, values: Any) -> None:
        """Validate and encode now; produced when the batch commits. Returns None."""
        self._outbox.send(topic, values)

    def __repr__(self) -> str:
        return f"<Batch {self.topic}[{self.partition}] of {len(self)} value(s)>"


class Stream(Generic[T]):
    """The values of every partition assigned to a per-record agent, batch by batch.

    ``async for value in stream`` never ends while the agent runs. Asking for the value
    after a batch's last one tells the runner the batch is done (it commits while the
    code waits for the next batch).
    """

    __slots__ = ("_at", "_batch", "_current", "_drained", "_next", "_outbox", "_set",
                 "_state", "_timed", "_wake")

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._batch: Decoded | None = None
        self._next = 0
        #: The batch and index of the value last taken.
        self._current: Decoded | None = None
        self._at = 0
        self._state: PartitionState | None = None
        self._timed = True
        #: The state last made CURRENT in the agent's task.
        self._set: PartitionState | None = None
        self._wake: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None

    @property
    def current(self) -> Record | None:
        """The envelope of the value last taken (None before the first)."""
        current = self._current
        return None if current is None else current.record(self._at)

    def __aiter__(self) -> Stream[T]:
        return self

    async def __anext__(self) -> T:
        batch, i = self._batch, self._next
        while batch is None or i >= len(batch.values):
            drained = self._drained
            if drained is not None and not drained.done():
                drained.set_result(None)
            self._wake = asyncio.get_running_loop().create_future()
            await self._wake
            batch, i = self._batch, self._next
        self._next = i + 1
        self._current, self._at = batch, i
        state = self._state
        if state is not None:
            if state is not self._set:
                # Set in the agent's own task (its table calls act on this partition);
                # only this stream sets it there, so once per partition change is enough.
                CURRENT.set(state)
                self._set = state
            if self._timed:
                state.set_record_time(batch.times[i],
                                      batch.streams[i] if batch.streams else None)
        value: T = batch.values[i]
        return value

    async def send(self, topic: str, values: Any) -> None:
        """Validate and encode now; produced when the batch commits. Returns None."""
        self._outbox.send(topic, values)

    async def feed(self, decoded: Decoded, state: PartitionState | None,
                   task: asyncio.Task[None], *, timed: bool = True) -> None:
        """Hand a batch to the agent's coroutine (``task``); return once it asked for the
        value after the batch's last one. What the task raised is raised here."""
        self._batch, self._next = decoded, 0
        self._state = state
        self._timed = timed
        drained = self._drained = asyncio.get_running_loop().create_future()
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)
        await asyncio.wait({drained, task}, return_when=asyncio.FIRST_COMPLETED)
        if drained.done():
            return
        self._batch = None
        task.result()  # raises what the agent raised
        raise ConfigError("a per-record agent's function returned; it must iterate its "
                          "stream (`async for value in stream`) for as long as it runs")
