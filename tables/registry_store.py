"""The registry's state, kept in a compacted single-partition Kafka topic.

Contract:
- Topic in/out: ``settings.registry_topic`` (1 partition, ``cleanup.policy=compact``).
- On start every worker replays the topic to the fetch high watermark before it serves
  anything, then tails it, so all workers converge on the same :class:`RegistryState`.
- Writes append a decision and return only after this worker has applied the log up to
  that record, so a write is visible to the writer's next read (read-your-writes) and its
  outcome is the log's outcome: if a concurrent writer won the version or the id, the
  decision is ignored by every worker and this store decides again (bounded retries).
- Delivery: at-least-once appends; a duplicate decision is ignored by ``apply``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.compatibility import Compatibility
from onepipe.schemas.errors import BrokerError, RegistryConflictError
from onepipe.schemas.registry_state import Decision, RegistryState, SchemaVersion
from onepipe.tables.kafka.clients import KafkaClients
from onepipe.tables.kafka.topics import ensure_topic, read_to_end

log = logging.getLogger(__name__)

_MAX_DECISION_ATTEMPTS = 20


class RegistryStore:
    """Registry state replayed from Kafka, with serialized writes."""

    def __init__(
        self,
        kafka: KafkaClients,
        topic: str,
        *,
        replication_factor: int = 1,
        write_timeout: float = 30.0,
        fetch_wait_ms: int = 100,
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.state = RegistryState()
        self._replication_factor = replication_factor
        self._tp = TopicPartition(topic, 0)
        self._producer: AIOKafkaProducer | None = None
        self._own_producer = False
        self._consumer: AIOKafkaConsumer | None = None
        self._tail: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()
        self._write_lock = asyncio.Lock()
        self._write_timeout = write_timeout
        # A write returns once this worker reads it back; on brokers that hold a fetch for
        # its whole wait (tansu) that wait is the write latency.
        self._fetch_wait_ms = fetch_wait_ms
        self._closed = False

    # -------------------------------------------------------------- lifecycle
    async def start(self, producer: AIOKafkaProducer | None = None) -> None:
        """Create the log topic if needed, replay it to its end, then tail it.

        ``producer`` is a started producer to share (the worker's); without one the store
        starts its own at its first write, so the commands that only read the registry
        (``compact``, ``verify``, ``lake read``) open no producer at all.
        """
        await ensure_topic(
            self.kafka,
            self.topic,
            partitions=1,
            replication_factor=self._replication_factor,
            configs={"cleanup.policy": "compact"},
        )
        self._producer = producer
        self._consumer = self.kafka.reader("onepipe-registry",
                                           fetch_max_wait_ms=self._fetch_wait_ms)
        await self._consumer.start()
        self._consumer.assign([self._tp])
        await self._consumer.seek_to_beginning(self._tp)
        highwater = await read_to_end(self._consumer, self._tp, self._apply_batch)
        log.info(
            "registry replayed %s[0] to offset %d: %d subject(s), %d schema(s), %d topic(s)",
            self.topic, highwater, len(self.state.subjects), len(self.state.schemas_by_id),
            len(self.state.topics),
        )
        self._tail = asyncio.create_task(self._tail_log(), name="registry-tail")

    async def stop(self) -> None:
        """Stop tailing and close clients; harmless to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._tail is not None:
            self._tail.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tail
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None and self._own_producer:
            await self._producer.stop()

    async def _own(self) -> AIOKafkaProducer:
        """The store's own producer, started at the first write."""
        producer = self.kafka.producer("onepipe-registry")
        try:
            # Bounded like a write: an idempotent start retries its producer-id request
            # for as long as the broker answers with a retriable error.
            await asyncio.wait_for(producer.start(), self._write_timeout)
        except (KafkaError, TimeoutError) as exc:
            await producer.stop()  # a half-started client still holds connections
            hint = ("; if this broker has no idempotent producers (tansu), set "
                    "ONEPIPE_IDEMPOTENT_PRODUCER=false") if self.kafka.idempotent else ""
            raise BrokerError(f"Kafka at {self.kafka.bootstrap} refused the registry's "
                              f"producer: {exc!r}{hint}") from exc
        except BaseException:
            await producer.stop()
            raise
        self._own_producer = True
        return producer

    async def __aenter__(self) -> RegistryStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------- writes
    async def register(self, subject: str, schema: AvroSchema) -> SchemaVersion:
        """Register ``schema`` under ``subject`` (idempotent); raise if incompatible."""
        # Decide under the write lock, so each decision sees this worker's earlier writes.
        # Decided outside it, n concurrent registrations on one worker all proposed the same
        # version and id, all but one lost to their own worker, and the retries cost O(n²)
        # appends until some ran out of attempts (503).
        async with self._write_lock:
            for _ in range(_MAX_DECISION_ATTEMPTS):
                outcome = self.state.decide_register(subject, schema)
                if isinstance(outcome, SchemaVersion):
                    return outcome
                await self._append_locked(outcome)
                found = self.state.lookup(subject, schema)
                if found is not None:
                    return found
                # Another worker took the version or the id first: decide again.
        raise RegistryConflictError(
            f"registering under subject {subject!r} lost {_MAX_DECISION_ATTEMPTS} races "
            "to concurrent writers; try again"
        )

    async def set_config(self, subject: str | None, level: Compatibility | None) -> None:
        """Set (or with ``None`` remove) a subject's level; ``subject=None`` is global."""
        value = {"type": "config", "subject": subject,
                 "compatibility": level.value if level else None}
        await self._append(Decision(key=f"config/{subject or ''}", value=value))

    async def put_metadata(self, topic: str, metadata: dict[str, Any]) -> None:
        value = {"type": "metadata", "topic": topic, "metadata": metadata}
        await self._append(Decision(key=f"metadata/{topic}", value=value))

    async def _append(self, decision: Decision) -> None:
        # One write at a time per worker keeps this worker's decisions from racing each
        # other; races with other workers are settled by the log order.
        async with self._write_lock:
            await self._append_locked(decision)

    async def _append_locked(self, decision: Decision) -> None:
        """Append and wait until applied; the caller holds ``_write_lock``."""
        if self._tail is None or self._closed:
            raise BrokerError("the registry is not running; start the worker first")
        if self._producer is None:
            self._producer = await self._own()
            if self._closed:  # stopped while the producer started: stop() missed it
                await self._producer.stop()
                raise BrokerError("the registry was stopped during a write")
        try:
            meta = await asyncio.wait_for(
                self._producer.send_and_wait(
                    self.topic,
                    orjson.dumps(decision.value),
                    key=decision.key.encode(),
                    partition=0,
                ),
                self._write_timeout,
            )
        except (KafkaError, TimeoutError) as exc:
            raise BrokerError(
                f"could not append to registry log {self.topic}: {exc!r}"
            ) from exc
        await self.wait_applied(meta.offset)

    async def wait_applied(self, offset: int) -> None:
        """Wait until this worker applied the log through ``offset``."""
        async with self._progress:
            try:
                await asyncio.wait_for(
                    self._progress.wait_for(lambda: self.state.applied_offset >= offset),
                    self._write_timeout,
                )
            except TimeoutError as exc:
                raise BrokerError(
                    f"registry log {self.topic}[0]@{offset} was written but not read back "
                    f"within {self._write_timeout}s"
                ) from exc

    async def wait_for_schema(self, schema_id: int, timeout: float) -> bool:  # noqa: ASYNC109 - a bound, not a cancellation scope
        """Wait until ``schema_id`` is known here (registered on another worker, say)."""
        async with self._progress:
            try:
                await asyncio.wait_for(
                    self._progress.wait_for(lambda: schema_id in self.state.schemas_by_id),
                    timeout,
                )
            except TimeoutError:
                return False
        return True

    # ------------------------------------------------------------------ reads
    async def _tail_log(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(self._tp, timeout_ms=1000)
            except KafkaError:
                log.exception("registry tail of %s[0] failed; retrying", self.topic)
                await asyncio.sleep(1.0)  # back off before asking the broker again
                continue
            for records in batches.values():
                await self._apply_batch(records)

    async def _apply_batch(self, records: list[ConsumerRecord[Any, Any]]) -> None:
        for record in records:
            try:
                value = orjson.loads(record.value) if record.value is not None else {}
            except orjson.JSONDecodeError:
                log.warning("skipping unreadable registry record %s[0]@%d", self.topic,
                            record.offset)
                value = {}
            if not isinstance(value, dict):
                value = {}
            self.state.apply(record.offset, value)
        async with self._progress:
            self._progress.notify_all()
