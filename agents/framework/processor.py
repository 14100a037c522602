"""One agent's step over one partition batch, without a broker: the runner's and the test
kit's common core.

Per batch: decode every record with the topic's reader schema, convert it to the agent's
``record=`` type and compute its partition time - in columns, in one polars call, when
the whole batch is values of the reader schema itself (onepipe.agents.framework.columns:
~0.7 µs a record for bench/agents.py's 200-byte records and 3-field record type, typed
records included, instead of ~3.7 µs), else value by value (onepipe.schemas.codec; what
does not decode is counted and logged with ``topic[partition]@offset``, never handed
over) - make the partition's state current (onepipe.tables.state ``CURRENT``), run the
user code (a batch agent: one call; a per-record agent: its long-lived coroutine is fed
until it asks for the value after the batch's last one; without a window table stream
time rises once per batch instead of per value), close the windows stream time passed,
and hand back an :class:`Outcome`: the encoded sends and the state changes the caller
commits (onepipe.agents.framework.runner), in that order. A failure drops the batch's
pending state and sends and is raised: the caller restarts from durable state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from onepipe.agents.framework.columns import decode_columns
from onepipe.agents.framework.declare import AgentSpec
from onepipe.agents.framework.metrics import AgentMetrics
from onepipe.agents.framework.stream import Batch, Decoded, Outbox, Stream
from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.codec import decode, schema_id_of
from onepipe.schemas.errors import CodecError, NotFoundError
from onepipe.schemas.metadata import KAFKA_TIMESTAMP
from onepipe.schemas.registry_state import RegistryState
from onepipe.schemas.typed import check_record_type, record_converter
from onepipe.sinks.publish.publisher import TopicWriter
from onepipe.tables.state import CURRENT, PartitionState, activate

__all__ = ["AgentProcessor", "Outcome", "RawRecord", "partition_time_ms"]

log = logging.getLogger(__name__)

_EPOCH_DAY = date(1970, 1, 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class RawRecord(Protocol):
    """What the processor reads of a Kafka record (aiokafka's ConsumerRecord fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(slots=True)
class Outcome:
    """What one partition batch leaves to commit."""

    #: The next input offset once this batch commits.
    next_offset: int
    #: Encoded records per topic: sends and closed windows' emits, produced first.
    sends: dict[str, list[tuple[bytes | None, bytes]]] = field(default_factory=dict)
    #: The state changes (changelog key, value or None for a delete), produced second.
    changes: list[tuple[bytes, bytes | None]] = field(default_factory=list)


def partition_time_ms(value: Any) -> int | None:
    """A ``partition_time`` field's value as epoch ms: a datetime (naive counts as UTC),
    a date (its midnight UTC), or a long of epoch ms; anything else has no time."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        # Integer arithmetic: int(moment.timestamp() * 1000) was 1 ms short for ~0.6% of
        # millisecond timestamps (float rounding).
        return (moment - _EPOCH) // _MS
    if isinstance(value, date):
        return (value - _EPOCH_DAY).days * 86_400_000
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


class AgentProcessor:
    """Runs one agent's batches; one per agent and worker (or test kit)."""

    def __init__(self, spec: AgentSpec, state: RegistryState,
                 writer: Callable[[str], TopicWriter], metrics: AgentMetrics, *,
                 wait_for_schema: Callable[[int], Awaitable[bool]] | None = None) -> None:
        self.spec = spec
        self._state = state
        self.outbox = Outbox(spec.name, spec.sends, writer)
        self.metrics = metrics
        self._wait_for_schema = wait_for_schema
        self._converters: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {}
        #: The reader schema of each topic a ``record=`` type reads (see _reader).
        self._pinned: dict[str, AvroSchema] = {}
        self._told: set[str] = set()
        self._stream: Stream[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        #: Whether a window table reads each record's time (else stream time rises per batch).
        self._timed = any(t.window is not None for t in spec.tables)

    async def process(self, topic: str, partition: int, records: Sequence[RawRecord],
                      state: PartitionState | None) -> Outcome:
        """Run the agent over ``records`` (one partition, offset order); see the module."""
        first = state.position.next_offset if state is not None else 0
        records = _fresh(records, first)
        next_offset = records[-1].offset + 1 if records else first
        items = await self._decode(topic, records)
        self.metrics.batches += 1
        self.metrics.records += len(items)
        if state is not None and items:
            if self._timed:
                # Each value judged by the late rule against the stream time as of it,
                # however the code takes the values (twice, by index).
                items.streams = _stream_times(items.times, state.stream_time_ms)
            else:
                # No window table reads record times: stream time rises once per batch.
                latest = max((t for t in items.times if t is not None), default=None)
                if latest is not None:
                    state.advance(latest)
        late = state.late if state is not None else 0
        self.outbox.take()
        try:
            if items:
                await self._run(topic, partition, items, state)
            if state is not None:
                for to, emitted in state.close_windows():
                    self.outbox.add(to, emitted)
        except BaseException:
            self.outbox.take()
            if state is not None:
                state.discard()
            raise
        outcome = Outcome(next_offset, self.outbox.take(),
                          state.changes() if state is not None else [])
        if state is not None:
            self.metrics.late += state.late - late
        return outcome

    async def close(self) -> None:
        """End the per-record coroutine (a restart starts a new one); harmless twice."""
        task, self._task, self._stream = self._task, None, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("agent %s ended on an error while it was closed",
                              self.spec.name)

    async def _run(self, topic: str, partition: int, items: Decoded,
                   state: PartitionState | None) -> None:
        if self.spec.kind == "batch":
            token = activate(state) if state is not None else None
            try:
                await self.spec.fn(Batch(topic, partition, items, self.outbox, state,
                                         timed=self._timed))
            finally:
                if token is not None:
                    CURRENT.reset(token)
            return
        if self._task is None or self._stream is None or self._task.done():
            # A coroutine that ended (on an exception a test kit reported) is started anew,
            # as the worker's restart does.
            self._stream = Stream(self.outbox)
            self._task = asyncio.create_task(self.spec.fn(self._stream),
                                             name=f"agent-{self.spec.slug}")
        await self._stream.feed(items, state, self._task, timed=self._timed)

    async def _decode(self, topic: str, records: Sequence[RawRecord]) -> Decoded:
        state = self._state
        meta = state.topic_metadata(topic)
        reader = self._reader(topic)
        time_field = None if meta.partition_time == KAFKA_TIMESTAMP else meta.partition_time
        fast = decode_columns(records, reader, state.schema_by_id, self.spec.record,
                              time_field, partition_time_ms, topic)
        if fast is not None:
            return fast
        convert = self._converter(topic, reader.identity, reader)
        raws: list[RawRecord] = []
        values: list[Any] = []
        dicts: list[dict[str, Any]] = []
        times: list[int | None] = []
        ids: list[int] = []
        # Once a wait for a schema id timed out, this batch waits no more: the replica had
        # its seconds to catch up, and records framed with ever new ids must not cost a
        # wait each. (An id no registry holds - below 1, or unreadable - is not waited for.)
        waits = [self._wait_for_schema]
        for r in records:
            try:
                schema_id, value = await self._decode_one(r.value, reader, waits)
                converted = convert(value)
            except (CodecError, NotFoundError) as exc:
                self.metrics.undecodable += 1
                log.warning("agent %s skips undecodable record %s[%d]@%d: %s",
                            self.spec.name, r.topic, r.partition, r.offset, exc.message,
                            extra={"topic": r.topic, "partition": r.partition,
                                   "offset": r.offset})
                continue
            raws.append(r)
            values.append(converted)
            dicts.append(value)
            ids.append(schema_id)
            times.append(r.timestamp if time_field is None
                         else partition_time_ms(value.get(time_field)))
        return Decoded(raws, values, times, ids, dicts)

    async def _decode_one(self, data: bytes | None, reader: AvroSchema,
                          waits: list[Callable[[int], Awaitable[bool]] | None]
                          ) -> tuple[int, Any]:
        if data is None:
            raise CodecError("a tombstone (no value)")
        try:
            return decode(data, self._state.schema_by_id, reader)
        except NotFoundError:
            # Registered on another worker a moment ago: give the registry a few seconds
            # to replay it before the record counts as undecodable.
            schema_id = schema_id_of(data)
            wait = waits[0]
            if schema_id is None or wait is None or not self._state.could_learn(schema_id):
                raise
            if not await wait(schema_id):
                waits[0] = None
                raise
            return decode(data, self._state.schema_by_id, reader)

    def _reader(self, topic: str) -> AvroSchema:
        """The schema records of ``topic`` are read with.

        Dicts follow the topic's latest schema. A ``record=`` type was checked against
        the latest schema when this worker started, so its agent keeps reading with that
        one until the worker restarts: a version registered meanwhile (compatible, but
        perhaps without a field the type needs) is read through Avro resolution into the
        shape the type fits, instead of failing every batch from then on.
        """
        latest = self._state.reader_schema(topic)
        cls = self.spec.record
        if cls is None:
            return latest
        pinned = self._pinned.get(topic)
        if pinned is None:
            # The start checks passed against this schema, unless a version was
            # registered in between: checked again, once.
            check_record_type(cls, latest, topic=topic)
            pinned = self._pinned[topic] = latest
        elif pinned.identity != latest.identity and topic not in self._told:
            self._told.add(topic)
            log.warning("agent %s reads %s with the schema its record type %s was checked "
                        "against at start; a newer version is registered, read as that one "
                        "(new fields are not seen): update the type (onepipe codegen %s) "
                        "and restart the worker to read them", self.spec.name, topic,
                        cls.__qualname__, topic)
        return pinned

    def _converter(self, topic: str, identity: str, reader: AvroSchema
                   ) -> Callable[[dict[str, Any]], Any]:
        cls = self.spec.record
        if cls is None:
            return _same
        found = self._converters.get((topic, identity))
        if found is None:
            found = self._converters[(topic, identity)] = record_converter(
                cls, reader, topic=topic)
        return found


def _same(value: dict[str, Any]) -> dict[str, Any]:
    return value


def _stream_times(times: Sequence[int | None], start: int | None) -> list[int | None]:
    """The stream time as of each record: the highest of ``start`` and the times up to it."""
    out: list[int | None] = []
    high = start
    for t in times:
        if t is not None and (high is None or t > high):
            high = t
        out.append(high)
    return out


def _fresh(records: Sequence[RawRecord], first: int) -> list[RawRecord]:
    """The records not yet in the state, each offset once, in order.

    A batch is gathered over several fetches (the runner's ``max_wait``); a rebalance in
    between that hands a partition back seeks it to its stored position, so the next
    fetch repeats offsets already gathered. Only strictly increasing offsets from
    ``first`` (the state's next offset) are kept: a record is never applied twice.
    """
    fresh = []
    expected = first
    for r in records:
        if r.offset >= expected:
            fresh.append(r)
            expected = r.offset + 1
    return fresh
