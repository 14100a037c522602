"""Publishing records to registered topics: validate everything, then produce.

Contract: every record of a call is converted and validated against the topic's schema
before anything is sent; one invalid record fails the whole call with
:class:`RecordValidationError` and nothing is produced. Records are keyed by their unique
key (see ``onepipe.schemas.codec.KeyEncoder``) so every version of a key lands in one partition.
A call returns after the broker acknowledged every record (``acks=all``). If the broker
fails part-way, the call raises :class:`BrokerError` and some records may already be in
Kafka: a retry duplicates them, which downstream dedup by unique key absorbs
(at-least-once; DESIGN.md).
"""

from __future__ import annotations

import asyncio
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from onepipe.schemas.avro_batch_write import MIN_RECORDS, ColumnWriter, column_writer
from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.codec import KeyEncoder, encode_many
from onepipe.schemas.errors import (
    BrokerError,
    FieldError,
    NotFoundError,
    OnepipeError,
    RecordValidationError,
    RequestError,
)
from onepipe.schemas.registry_state import RegistryState
from onepipe.schemas.topic_names import value_subject
from onepipe.schemas.validation import RecordConverter, compile_converter


class RecordSender(Protocol):
    """What :class:`Publisher` needs of a Kafka producer (aiokafka's fits)."""

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None,
        partition: int | None = None, timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]: ...


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where one record landed."""

    #: Kafka partition.
    partition: int
    #: Offset within the partition.
    offset: int
    #: The record's timestamp (epoch ms) as Kafka stored it; None when not reported.
    timestamp: int | None = None

    def to_json(self) -> dict[str, int]:
        return {"partition": self.partition, "offset": self.offset}


#: Where one record landed, as the producer reports it: (partition, offset, timestamp in
#: epoch ms or None) - the fields of :class:`Delivery`, without an object per record.
Landed = tuple[int, int, int | None]


@dataclass(frozen=True, slots=True)
class TopicWriter:
    """Everything needed to turn JSON records of one topic version into Kafka records."""

    topic: str
    schema_id: int
    version: int
    schema: AvroSchema
    converter: RecordConverter
    key_encoder: KeyEncoder | None

    #: Largest encoded value (framing included) a record may have; None: no limit.
    max_record_bytes: int | None = None
    #: The batch path (onepipe.schemas.avro_batch_write) when the schema is one it takes:
    #: the same pairs as the per-record path, or None to take that path.
    columns: ColumnWriter | None = None

    def encode(self, records: Sequence[Any]) -> list[tuple[bytes | None, bytes]]:
        """Validate every record, then encode; raise before encoding anything."""
        if self.columns is not None and len(records) >= MIN_RECORDS:
            encoded = self.columns.encode(records)
            if encoded is not None:
                self._check_sizes(encoded, 0)
                return encoded
        return self._per_record(records)

    def _per_record(self, records: Sequence[Any]) -> list[tuple[bytes | None, bytes]]:
        datums, errors = self.converter.convert_many(list(records))
        if errors:
            raise RecordValidationError(errors)
        return self._encode(datums, 0)

    async def encode_async(self, records: Sequence[Any]) -> list[tuple[bytes | None, bytes]]:
        """:meth:`encode`, letting the event loop run about every :data:`TURN_SECONDS`.

        Validation and encoding cost ~17 µs a record when this was written (3-4 µs a
        ``widgets`` record on a fast day since, 12-20 µs on a slow one; bench/encode_path.py,
        bench/produce.py): a 60,000-record request held the loop for a second, and
        ``/health``, every other request and the agents with it. A fixed count of records
        between turns held it 4 ms on one machine and 20 ms on another; a clock read per
        :data:`ENCODE_SLICE` records bounds the hold in time instead. The batch path
        (:attr:`columns`) is looked at once per slice of its own size (about 16,000 values,
        a few ms, whatever the schema's width).
        """
        clock = time.perf_counter
        turn_at = clock() + TURN_SECONDS
        columns = self.columns
        if columns is not None and len(records) >= MIN_RECORDS:
            # A slice of the batch path's size at a time (a few ms each, whatever the
            # schema's width), a turn of the loop between them; a slice it does not take
            # sends the whole call per record.
            taken: list[tuple[bytes | None, bytes]] = []
            for part in columns.slices(records):
                if part is None:
                    break
                taken += part
                if clock() >= turn_at:
                    await asyncio.sleep(0)
                    turn_at = clock() + TURN_SECONDS
            else:
                # Sizes once all are valid: an invalid record anywhere is a 422 first, as
                # on the per-record path.
                self._check_sizes(taken, 0)
                return taken
        if len(records) <= ENCODE_SLICE:
            return self._per_record(records)
        datums: list[Any] = []
        errors: list[FieldError] = []
        convert_many = self.converter.convert_many
        for start in range(0, len(records), ENCODE_SLICE):
            part, part_errors = convert_many(list(records[start:start + ENCODE_SLICE]))
            datums += part
            errors += (FieldError(e.index + start, e.path, e.reason) for e in part_errors)
            if clock() >= turn_at:
                await asyncio.sleep(0)
                turn_at = clock() + TURN_SECONDS
        if errors:
            raise RecordValidationError(errors)
        encoded: list[tuple[bytes | None, bytes]] = []
        for start in range(0, len(datums), ENCODE_SLICE):
            encoded += self._encode(datums[start:start + ENCODE_SLICE], start)
            if clock() >= turn_at:
                await asyncio.sleep(0)
                turn_at = clock() + TURN_SECONDS
        return encoded

    def _encode(self, datums: list[Any], first: int) -> list[tuple[bytes | None, bytes]]:
        # A slice at a time: one buffer for all values (header included) and one for all
        # keys instead of a BytesIO per record (bench/encode_path.py, widgets: key + value
        # 5.9 -> 1.9 µs a record).
        values = encode_many(self.schema_id, self.schema, datums)
        key_encoder = self.key_encoder
        keys: Sequence[bytes | None] = (
            [None] * len(values) if key_encoder is None else key_encoder.encode_many(datums))
        encoded = list(zip(keys, values, strict=True))
        self._check_sizes(encoded, first)
        return encoded

    def _check_sizes(self, encoded: Sequence[tuple[bytes | None, bytes]], first: int) -> None:
        """413 for the first value over ``max_record_bytes`` (``first``: its index base)."""
        limit = self.max_record_bytes
        if limit is None or not encoded or max(map(len, map(_VALUE, encoded))) <= limit:
            return
        for i, (_, value) in enumerate(encoded):
            if len(value) > limit:
                raise RequestError(
                    f"record {first + i} encodes to {len(value)} bytes; the limit is "
                    f"{limit} (ONEPIPE_MAX_RECORD_BYTES; Kafka's default message limit is "
                    "1 MB); nothing was produced", status=413, code="record_too_large")


_VALUE = operator.itemgetter(1)
#: Records sent (aiokafka) or landed between two turns of the event loop.
SLICE = 1_000
#: Records validated or encoded between two looks at the clock, and the seconds of
#: validating and encoding after which the event loop gets a turn.
ENCODE_SLICE = 100
TURN_SECONDS = 0.005


class Publisher:
    """Validates and produces records for registered topics."""

    def __init__(
        self, state: RegistryState, sender: RecordSender | None = None, timeout: float = 30.0,
        max_record_bytes: int | None = None,
    ) -> None:
        self._state = state
        self._max_record_bytes = max_record_bytes
        self._sender = sender
        self._timeout = timeout
        self._writers: dict[tuple[str, int], TopicWriter] = {}
        self._generation = -1

    def bind(self, sender: RecordSender | None) -> None:
        """Attach the started producer (Kafka clients need the running event loop)."""
        self._sender = sender

    def writer(self, topic: str, version: int | str = "latest") -> TopicWriter:
        """The writer for a registered topic at a schema version (default latest)."""
        key, build = self._writer_for(topic, version)
        cached = self._writers.get(key)
        if cached is None:
            cached = self._writers[key] = build()
        return cached

    async def writer_async(self, topic: str, version: int | str = "latest") -> TopicWriter:
        """:meth:`writer`, a new one compiled in a worker thread: a schema of thousands of
        fields takes a second or more to compile (2,000 fields: ~0.56 s measured), which on
        the loop would hold every request and agent of the worker meanwhile."""
        key, build = self._writer_for(topic, version)
        cached = self._writers.get(key)
        if cached is None:
            generation = self._state.generation
            cached = await asyncio.to_thread(build)
            if self._state.generation == generation:  # else the registry changed meanwhile:
                # serve this request with it, cache only what the current state builds
                cached = self._writers.setdefault(key, cached)  # a concurrent call's first
        return cached

    def _writer_for(self, topic: str, version: int | str
                    ) -> tuple[tuple[str, int], Callable[[], TopicWriter]]:
        """The cache key of a topic version's writer, and how to build it (pure: may run
        in another thread)."""
        state = self._state
        if state.generation != self._generation:
            self._writers.clear()
            self._generation = state.generation
        meta = state.topic_metadata(topic)  # NotFoundError for unknown topics
        subject = value_subject(topic)
        try:
            sv = state.version(subject, version)
        except NotFoundError as exc:
            raise NotFoundError(f"topic {topic!r}: {exc.message}", exc.error_code or 40402) from exc
        key_fields, limit = meta.key, self._max_record_bytes

        def build() -> TopicWriter:
            return TopicWriter(
                topic=topic,
                schema_id=sv.schema_id,
                version=sv.version,
                schema=sv.schema,
                converter=compile_converter(sv.schema),
                key_encoder=KeyEncoder(sv.schema, key_fields) if key_fields else None,
                max_record_bytes=limit,
                columns=column_writer(sv.schema, sv.schema_id, key_fields),
            )

        return (topic, sv.version), build

    async def publish(
        self, topic: str, records: Sequence[Any], version: int | str = "latest"
    ) -> list[Delivery]:
        """Validate all records, produce them, and wait for the broker's acks."""
        encoded = await (await self.writer_async(topic, version)).encode_async(records)
        return await self.send_encoded(topic, encoded)

    async def send_encoded(
        self, topic: str, encoded: Sequence[tuple[bytes | None, bytes]],
        headers: Sequence[Sequence[tuple[str, bytes]] | None] | None = None,
        timestamps_ms: Sequence[int | None] | None = None,
    ) -> list[Delivery]:
        """Produce already-validated records and wait for every ack.

        ``headers`` and ``timestamps_ms``, when given, hold one entry per record (None:
        no headers, the producer's clock)."""
        return [Delivery(p, o, t) for p, o, t in
                await self.send_landed(topic, encoded, headers, timestamps_ms)]

    async def send_landed(
        self, topic: str, encoded: Sequence[tuple[bytes | None, bytes]],
        headers: Sequence[Sequence[tuple[str, bytes]] | None] | None = None,
        timestamps_ms: Sequence[int | None] | None = None,
    ) -> list[Landed]:
        """:meth:`send_encoded`, each record's result as a ``(partition, offset,
        timestamp)`` tuple instead of a :class:`Delivery`.

        Why: the produce endpoints answer with these figures straight away; a frozen
        dataclass per record and its ``to_json`` cost ~0.9 µs of a 500-record request's
        ~9.5 µs a record (measured: building the response from tuples, 1.1 -> 0.2 µs).
        """
        sender = self._sender
        if sender is None:
            raise BrokerError("the publisher has no running producer; start the worker first")
        futures: list[asyncio.Future[Any]] = []
        try:
            # One deadline for the whole call, sends included: send() itself waits for
            # metadata and for room in the producer's buffer, both of which can take as
            # long as the broker is away, so a deadline on the acks alone let a request
            # to an unreachable broker hang for minutes.
            async with asyncio.timeout(self._timeout):
                send_many = getattr(sender, "send_many", None)
                if send_many is not None and headers is None and timestamps_ms is None:
                    # librdkafka: one future for the call, no per-record coroutine.
                    futures.append(await send_many(topic, encoded))
                    landed: list[Landed] = await futures[0]
                    return landed
                if headers is None and timestamps_ms is None:
                    for i, (k, v) in enumerate(encoded, 1):
                        futures.append(await sender.send(topic, value=v, key=k))
                        if not i % SLICE:
                            # send() returns without yielding while the buffer has
                            # room: 60,000 of them held the loop for a third of a second.
                            await asyncio.sleep(0)
                else:
                    for i, (k, v) in enumerate(encoded):
                        futures.append(await sender.send(
                            topic, value=v, key=k,
                            timestamp_ms=timestamps_ms[i] if timestamps_ms else None,
                            headers=headers[i] if headers else None))
                # Await in order instead of gather(): the broker acks a whole batch at
                # once, so after the first record of a batch the rest are done and cost no
                # callback and no event-loop turn each (gather added both per record: ~10%
                # of worker CPU on 500-record requests).
                landed = []
                for start in range(0, len(futures), SLICE):
                    if start:
                        await asyncio.sleep(0)  # a turn of the loop between slices
                    for f in futures[start:start + SLICE]:
                        m = await f
                        landed.append((m.partition, m.offset, m.timestamp))
        except (TimeoutError, asyncio.CancelledError, KafkaError) as exc:
            # Records still pending are not acknowledged to the client; cancel their
            # futures (as wait_for(gather(...)) did). Some may reach Kafka anyway: the
            # client's retry duplicates them, which dedup absorbs.
            for f in futures:
                f.cancel()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise self._failure(topic, exc) from exc
        return landed

    def _failure(self, topic: str, exc: TimeoutError | KafkaError) -> OnepipeError:
        """What the client is told when Kafka did not acknowledge every record."""
        if isinstance(exc, MessageSizeTooLargeError):
            return RequestError(
                f"a record for {topic!r} is larger than the broker accepts ({exc!r}); "
                "records before it in this request may have been produced",
                status=413, code="record_too_large")
        if isinstance(exc, TimeoutError):
            return BrokerError(
                f"Kafka did not acknowledge the records for {topic!r} within "
                f"{self._timeout:g}s (ONEPIPE_PRODUCE_TIMEOUT): the broker is unreachable "
                "or overloaded; retrying is safe (duplicates are removed by unique key "
                "downstream)")
        return BrokerError(
            f"Kafka did not acknowledge the records for {topic!r}: {exc!r}; retrying is "
            "safe (duplicates are removed by unique key downstream)")
