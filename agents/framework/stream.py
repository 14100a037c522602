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
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from onepipe.schemas.errors import ConfigError
from onepipe.schemas.typed import to_record
from onepipe.sinks.publish.publisher import TopicWriter
from onepipe.tables.state import CURRENT, PartitionState

__all__ = ["Batch", "Item", "Outbox", "Record", "Stream"]

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


@dataclass(frozen=True, slots=True)
class Item:
    """One decoded record as the processor hands it over (not public)."""

    record: Record
    #: What the agent's code receives: the dict, or the ``record=`` type's instance.
    value: Any
    #: The record's partition time, epoch ms (None: the record has none).
    time_ms: int | None


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

    __slots__ = ("_items", "_outbox", "_state", "partition", "topic")

    def __init__(self, topic: str, partition: int, items: Sequence[Item], outbox: Outbox,
                 state: PartitionState | None) -> None:
        #: The topic and partition every value of the batch comes from.
        self.topic = topic
        self.partition = partition
        self._items = items
        self._outbox = outbox
        self._state = state

    @property
    def records(self) -> list[Record]:
        """The envelopes of the values, in the same order."""
        return [item.record for item in self._items]

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[T]: ...

    def __getitem__(self, index: int | slice) -> T | Sequence[T]:
        if isinstance(index, slice):
            return [item.value for item in self._items[index]]
        item = self._items[index]
        if self._state is not None:
            self._state.set_record_time(item.time_ms)
        value: T = item.value
        return value

    def __iter__(self) -> Iterator[T]:
        state = self._state
        for item in self._items:
            if state is not None:
                state.set_record_time(item.time_ms)
            yield item.value

    async def send(self, topic: str, values: Any) -> None:
        """Validate and encode now; produced when the batch commits. Returns None."""
        self._outbox.send(topic, values)

    def __repr__(self) -> str:
        return f"<Batch {self.topic}[{self.partition}] of {len(self._items)} value(s)>"


class Stream(Generic[T]):
    """The values of every partition assigned to a per-record agent, batch by batch.

    ``async for value in stream`` never ends while the agent runs. Asking for the value
    after a batch's last one tells the runner the batch is done (it commits while the
    code waits for the next batch).
    """

    __slots__ = ("_drained", "_items", "_outbox", "_state", "_wake", "current")

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._items: deque[Item] = deque()
        self._state: PartitionState | None = None
        self._wake: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        #: The envelope of the value last taken (None before the first).
        self.current: Record | None = None

    def __aiter__(self) -> Stream[T]:
        return self

    async def __anext__(self) -> T:
        while not self._items:
            drained = self._drained
            if drained is not None and not drained.done():
                drained.set_result(None)
            self._wake = asyncio.get_running_loop().create_future()
            await self._wake
        item = self._items.popleft()
        state = self._state
        if state is not None:
            # Set in the agent's own task: its table calls act on this partition.
            CURRENT.set(state)
            state.set_record_time(item.time_ms)
        self.current = item.record
        value: T = item.value
        return value

    async def send(self, topic: str, values: Any) -> None:
        """Validate and encode now; produced when the batch commits. Returns None."""
        self._outbox.send(topic, values)

    async def feed(self, items: Sequence[Item], state: PartitionState | None,
                   task: asyncio.Task[None]) -> None:
        """Hand a batch to the agent's coroutine (``task``); return once it asked for the
        value after the batch's last one. What the task raised is raised here."""
        self._items.extend(items)
        self._state = state
        drained = self._drained = asyncio.get_running_loop().create_future()
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)
        await asyncio.wait({drained, task}, return_when=asyncio.FIRST_COMPLETED)
        if drained.done():
            return
        self._items.clear()
        task.result()  # raises what the agent raised
        raise ConfigError("a per-record agent's function returned; it must iterate its "
                          "stream (`async for value in stream`) for as long as it runs")
