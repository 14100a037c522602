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
- With a journal (onepipe.tables.registry_journal; the worker keeps one in its data dir),
  an empty log is restored from it at start and a shorter one is refused, so a lost log
  never hands out a schema id twice. A log that goes backwards under a running store
  (the broker lost it) stops it: writes are refused (503) and ``lost_log`` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.codec import HEADER_SIZE, schema_id_of
from onepipe.schemas.compatibility import Compatibility
from onepipe.schemas.errors import BrokerError, RegistryConflictError
from onepipe.schemas.registry import decide
from onepipe.schemas.registry.modes import Mode
from onepipe.schemas.registry.normalize import normalized
from onepipe.schemas.registry_state import Decision, RegistryState, SchemaVersion
from onepipe.tables.kafka.clients import KafkaClients, Producer
from onepipe.tables.kafka.topics import ensure_topic, read_to_end
from onepipe.tables.registry_journal import JournalRecord, RegistryJournal

log = logging.getLogger(__name__)

_MAX_DECISION_ATTEMPTS = 20
#: Outcomes remembered: far more records than a writer waits past for its own.
_OUTCOMES_KEPT = 4096
_T = TypeVar("_T")
#: How long the log must end below what was read before the store calls it lost.
_BEYOND_SECONDS = 3.0


def _lost(what: str) -> RegistryConflictError:
    return RegistryConflictError(f"{what} lost {_MAX_DECISION_ATTEMPTS} races to "
                                 "concurrent writers; try again")


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
        journal: RegistryJournal | None = None,
    ) -> None:
        self.kafka = kafka
        self.journal = journal
        #: Why the store stopped following the log (it went backwards), or None.
        self.lost_log: str | None = None
        #: Called once with that reason when it happens (the worker stops its agents).
        self.on_lost_log: Callable[[str], None] | None = None
        self._beyond_since: float | None = None
        self.topic = topic
        self.state = RegistryState()
        self._replication_factor = replication_factor
        self._tp = TopicPartition(topic, 0)
        self._producer: Producer | None = None
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
        #: Whether each recently applied record changed the state, by offset: how a
        #: writer learns that its delete or level change was accepted, not lost to a race.
        self._outcomes: OrderedDict[int, bool] = OrderedDict()

    # -------------------------------------------------------------- lifecycle
    async def start(self, producer: Producer | None = None) -> None:
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
        # auto_offset_reset="none": a position beyond the log's end (the broker lost the
        # log) raises instead of silently reading a new log from its start.
        self._consumer = self.kafka.reader("onepipe-registry",
                                           fetch_max_wait_ms=self._fetch_wait_ms,
                                           auto_offset_reset="none")
        try:
            highwater = await self._replay(self._consumer)
        except BaseException:
            await self.stop()  # a refused or failed start leaves no client behind
            raise
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
            try:
                await self._consumer.stop()
            except asyncio.CancelledError:
                # aiokafka's Fetcher.close awaits the fetch it just cancelled, and a fetch
                # backing off from an unreachable broker re-raises that cancellation (seen
                # stopping a worker whose broker had just come back). Only a cancellation
                # of this task itself goes on; the consumer is closed either way.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
        if self._producer is not None and self._own_producer:
            await self._producer.stop()

    async def _replay(self, consumer: AIOKafkaConsumer) -> int:
        """Read the log to its end (restored from the journal if it was lost)."""
        await consumer.start()
        consumer.assign([self._tp])
        await consumer.seek_to_beginning(self._tp)
        highwater = await read_to_end(consumer, self._tp, self._apply_batch)
        if self.journal is not None and self.journal.last_offset >= highwater:
            highwater = await self._restore(highwater)
        return highwater

    async def _restore(self, highwater: int) -> int:
        """The journal knows more than the log: restore an empty log, refuse a shorter one."""
        assert self.journal is not None and self._consumer is not None
        self.journal.check_restorable(self.topic, highwater)
        if self._producer is None:
            self._producer = await self._own()
        await self.journal.restore(self._producer, self.topic, self._write_timeout)
        return await read_to_end(self._consumer, self._tp, self._apply_batch)

    async def _own(self) -> Producer:
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
    async def register(self, subject: str, schema: AvroSchema, *, normalize: bool = False
                       ) -> SchemaVersion:
        """Register ``schema`` under ``subject`` (idempotent; ``normalize``: compared and
        stored normalized); raise if incompatible or the subject is read-only."""
        # Decide under the write lock, so each decision sees this worker's earlier writes.
        # Decided outside it, n concurrent registrations on one worker all proposed the same
        # version and id, all but one lost to their own worker, and the retries cost O(n²)
        # appends until some ran out of attempts (503).
        async with self._write_lock:
            for _ in range(_MAX_DECISION_ATTEMPTS):
                if normalize:
                    found = self.state.lookup(subject, schema, normalize=True)
                    if found is not None:
                        return found
                    schema = normalized(schema)
                outcome = await decide.register_off_loop(self.state, subject, schema,
                                                         self._write_timeout)
                if isinstance(outcome, SchemaVersion):
                    return outcome
                await self._append_locked(outcome)
                found = self.state.lookup(subject, schema)
                if found is not None:
                    return found
        raise _lost(f"registering under subject {subject!r}")

    async def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        """Soft-delete every live version of ``subject``, or with ``permanent`` remove the
        soft-deleted ones for good; the versions deleted. Ids stay reserved."""
        return await self._decide_until_applied(f"deleting subject {subject!r}", lambda:
                                                decide.delete_subject(self.state, subject,
                                                                      permanent=permanent))

    async def delete_version(self, subject: str, version: str | int, *,
                             permanent: bool = False) -> int:
        """Soft-delete (or with ``permanent`` remove a soft-deleted) version; its number."""
        return await self._decide_until_applied(
            f"deleting version {version} of subject {subject!r}",
            lambda: decide.delete_version(self.state, subject, version, permanent=permanent))

    async def set_config(self, subject: str | None, level: Compatibility | None) -> None:
        """Set (or with ``None`` remove) a subject's level; ``subject=None`` is global."""
        if level is not None or subject in self.state.configs:
            await self._decide_until_applied("setting the compatibility level", lambda: (
                decide.set_config(self.state, subject, level), None))

    async def set_mode(self, subject: str | None, mode: Mode | None) -> None:
        """Set (or with ``None`` remove) a subject's mode; ``subject=None`` is global."""
        if mode is not None or subject in self.state.modes:
            await self._append(decide.set_mode(subject, mode))

    async def put_metadata(self, topic: str, metadata: dict[str, Any]) -> None:
        await self._append(decide.put_metadata(topic, metadata))

    async def _decide_until_applied(self, what: str,
                                    decide_now: Callable[[], tuple[Decision, _T]]) -> _T:
        """Decide, append, and return the result once the log accepted the decision;
        decide again (which raises the precise error, if any) when it lost a race."""
        async with self._write_lock:
            for _ in range(_MAX_DECISION_ATTEMPTS):
                decision, result = decide_now()
                if self._outcomes.get(await self._append_locked(decision), True):
                    return result
        raise _lost(what)

    async def _append(self, decision: Decision) -> None:
        # One write at a time per worker keeps this worker's decisions from racing each
        # other; races with other workers are settled by the log order.
        async with self._write_lock:
            await self._append_locked(decision)

    async def _append_locked(self, decision: Decision) -> int:
        """Append and wait until applied, return its offset; the caller holds the lock."""
        if self._tail is None or self._closed or self.lost_log is not None:
            raise BrokerError(self.lost_log or "the registry is not running; start the "
                              "worker first")
        if self._producer is None:
            self._producer = await self._own()
            if self._closed:  # stopped while the producer started: stop() missed it
                await self._producer.stop()
                raise BrokerError("the registry was stopped during a write")
        try:
            meta = await asyncio.wait_for(self._producer.send_and_wait(
                self.topic, orjson.dumps(decision.value), key=decision.key.encode(),
                partition=0), self._write_timeout)
        except (KafkaError, TimeoutError) as exc:
            raise BrokerError(f"could not append to registry log {self.topic}: {exc!r}"
                              ) from exc
        await self.wait_applied(meta.offset)
        return int(meta.offset)

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
        return not await self.wait_for_schemas({schema_id}, timeout)

    async def wait_for_schemas(self, schema_ids: Iterable[int], timeout: float  # noqa: ASYNC109 - a bound, not a cancellation scope
                               ) -> set[int]:
        """Wait up to ``timeout`` seconds *in all* until ``schema_ids`` are known here
        (registered on another worker moments ago); the ids still unknown after that.

        One deadline for the whole set, and none for an id below 1 (a registry's ids are
        1..2**31-1): a batch of values that only look framed, each with another id, costs
        one bounded wait, not one per id; an id the log skipped as unreadable, none.
        """
        ids = set(schema_ids)
        wanted = {i for i in ids if self.state.could_learn(i)}
        if not wanted <= self.state.schemas_by_id.keys():
            async with self._progress:
                try:
                    await asyncio.wait_for(self._progress.wait_for(
                        lambda: wanted <= self.state.schemas_by_id.keys()), timeout)
                except TimeoutError:
                    pass
        return {i for i in ids if i not in self.state.schemas_by_id}

    async def await_schemas(self, values: Iterable[bytes | None], timeout: float = 5.0  # noqa: ASYNC109 - a bound, not a cancellation scope
                            ) -> set[int]:
        """:meth:`wait_for_schemas` for the ids framed in ``values``."""
        headers = {v[:HEADER_SIZE] for v in values if v is not None}
        return await self.wait_for_schemas(
            {i for i in map(schema_id_of, headers) if i is not None}, timeout)

    # ------------------------------------------------------------------ reads
    async def _tail_log(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(self._tp, timeout_ms=1000)
            except OffsetOutOfRangeError:
                self._log_lost()
                await asyncio.sleep(5.0)  # stays lost until a restart; look again anyway
                continue
            except KafkaError:
                log.exception("registry tail of %s[0] failed; retrying", self.topic)
                await asyncio.sleep(1.0)  # back off before asking the broker again
                continue
            for records in batches.values():
                await self._apply_batch(records)
            self._check_end(self._consumer.highwater(self._tp))

    def _check_end(self, highwater: int | None) -> None:
        """A log that ends below what was read is another log, once that holds for a
        while (a new partition leader's high watermark can lag a moment)."""
        if highwater is None or highwater > self.state.applied_offset:
            self._beyond_since = None
            return
        now = time.monotonic()
        if self._beyond_since is None:
            self._beyond_since = now
        elif now - self._beyond_since >= _BEYOND_SECONDS:
            self._log_lost()

    def _log_lost(self) -> None:
        if self.lost_log is None:
            self.lost_log = (
                f"registry log {self.topic}[0] went back below @{self.state.applied_offset}, "
                "which this worker had read: the broker lost its log (or the topic was "
                "recreated). Registry writes and produce requests are refused until the "
                "worker restarts (which restores the log from the journal, or says why not).")
            log.error("%s", self.lost_log)
            if self.on_lost_log is not None:
                self.on_lost_log(self.lost_log)

    async def _apply_batch(self, records: list[ConsumerRecord[Any, Any]]) -> None:
        if self.lost_log is not None:
            return
        if records and records[0].offset <= self.state.applied_offset:
            self._log_lost()
            return
        if self.journal is not None:
            self.journal.append(JournalRecord(r.offset, r.key, r.value) for r in records)
        for record in records:
            try:
                value = orjson.loads(record.value) if record.value is not None else {}
            except orjson.JSONDecodeError:
                log.warning("skipping unreadable registry record %s[0]@%d", self.topic,
                            record.offset)
                value = {}
            if not isinstance(value, dict):
                value = {}
            self._outcomes[record.offset] = self.state.apply(record.offset, value)
        while len(self._outcomes) > _OUTCOMES_KEPT:
            self._outcomes.popitem(last=False)
        async with self._progress:
            self._progress.notify_all()
