"""The sink agent: one catalog sink, ``<topic>.unique`` into one database table.

The contract is the package's (onepipe.agents.sink). A batch agent on the skeleton
(onepipe.agents.batch): its source of truth is the position table in the target database,
read at assignment and written with the rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

from onepipe.agents.batch import BatchAgent, Batches
from onepipe.agents.sink.rows import build_rows
from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.errors import NotFoundError, OnepipeError
from onepipe.schemas.metadata import SinkSpec, TopicMetadata
from onepipe.schemas.registry_state import RegistryState
from onepipe.schemas.topic_names import dlq_topic, unique_topic
from onepipe.sinks.db import (
    Database,
    Rejected,
    SinkRow,
    SinkSchemaError,
    SinkTable,
    columns_of,
)
from onepipe.sinks.db.sql import POSITIONS
from onepipe.sinks.formats.raw import typed_schema
from onepipe.tables.kafka import KafkaClients, ensure_topic
from onepipe.tables.kafka.types import GroupConsumer
from onepipe.tables.registry_store import RegistryStore

log = logging.getLogger(__name__)

__all__ = ["SinkAgent", "SinkMetrics"]

#: Header names of a dead-letter record.
DLQ_SINK, DLQ_REASON, DLQ_UNIQUE = "onepipe.sink", "onepipe.reason", "onepipe.unique"
#: How long a position must stay beyond the log's end before the sink stops.
_BEYOND_SECONDS = 5.0


class SinkPositionError(OnepipeError):
    """A sink's position in its database lies beyond the end of ``<topic>.unique``."""

    code = "sink_position"


@dataclass(slots=True)
class SinkMetrics:
    """What one sink did (``onepipe sinks``, ``/status``, ``/metrics``)."""

    #: ``starting``, ``running``, ``failing`` (retrying), ``paused`` (needs a person).
    state: str = "starting"
    #: The last error, and when (epoch seconds); kept after recovery for the record.
    last_error: str | None = None
    last_error_at: float = 0.0
    #: Rows upserted (a row a higher rank already beat counts too: it was applied).
    rows_written: int = 0
    #: Rows the database refused, sent to ``<topic>.dlq``.
    rejected: int = 0
    #: ``.unique`` records that did not decode or rank (left out).
    undecodable: int = 0
    #: Transactions committed.
    batches: int = 0
    #: Restarts after a failure.
    restarts: int = 0
    #: Next ``.unique`` offset per partition assigned here, as committed in the database.
    positions: dict[int, int] = field(default_factory=dict)
    #: Schema changes applied to the table, in words.
    changes: list[str] = field(default_factory=list)


class SinkAgent(BatchAgent[SinkMetrics]):
    """Writes one topic's winners to one sink's table; an async context manager."""

    kind = "sink"
    recovery = "resuming from the positions in its database"

    def __init__(self, *, kafka: KafkaClients, group_id: str, registry: RegistryStore,
                 topic: str, spec: SinkSpec, database: Database, replication_factor: int = 1,
                 max_records: int = 20_000,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(kafka=kafka, group_id=group_id, registry=registry,
                         metrics=SinkMetrics(), max_records=max_records, topics=[topic])
        self.topic, self.spec, self.database = topic, spec, database
        self._replication_factor = replication_factor
        self._clock = clock
        self._table: SinkTable | None = None
        self._meta: TopicMetadata | None = None
        self._reader: AvroSchema | None = None
        self._producer: AIOKafkaProducer | None = None
        self._next: dict[int, int] = {}
        #: Partition -> when its position was first seen beyond the log's end.
        self._beyond: dict[int, float] = {}
        #: The records of the batch being written, by (partition, offset): a refused row
        #: goes to the dead-letter topic with its record's key, value and headers.
        self._in_flight: dict[tuple[int, int], ConsumerRecord[Any, Any]] = {}

    @property
    def name(self) -> str:
        return f"sink {self.topic}/{self.spec.name} ({self.database.where})"

    async def wait_written(self, positions: dict[int, int]) -> None:
        """Wait until every partition's committed position reaches its mark."""
        await self.wait_until(lambda m: all(m.positions.get(p, 0) >= mark
                                            for p, mark in positions.items()))

    # ------------------------------------------------------------------ hooks
    async def _open(self) -> None:
        # The database connects in the loop (_wanted), so an unreachable one is retried
        # with back-off instead of failing the worker's start.
        self._producer = self._kafka.producer(self._group_id)
        await self._producer.start()

    async def _close(self) -> None:
        producer, self._producer = self._producer, None
        try:
            if producer is not None:
                await producer.stop()
        finally:
            await self.database.stop()

    async def _wanted(self, consumer: GroupConsumer, state: RegistryState
                      ) -> frozenset[str]:
        """``<topic>.unique`` while the sink is declared and its table fits the schema."""
        meta = state.topics.get(self.topic)
        if meta is None or self.spec not in meta.sinks:
            return frozenset()
        try:
            await self.database.start()
        except Exception as exc:
            self._set_error("failing", f"cannot reach {self.database.where}: "
                                       f"{type(exc).__name__}: {exc}")
            raise
        try:
            reader = state.reader_schema(self.topic)
        except NotFoundError:
            return frozenset()  # metadata before its schema: wait for the schema
        if self.metrics.state == "paused" and reader is self._reader:
            return frozenset()
        existing = set(await consumer.topics())  # whole-cluster listing: creates nothing
        if unique_topic(self.topic) not in existing:
            self._look_again_at = self._clock()
            return frozenset()
        if not await self._prepare(meta, reader):
            return frozenset()
        await ensure_topic(self._kafka, dlq_topic(self.topic), partitions=1,
                           replication_factor=self._replication_factor)
        if self.metrics.state in ("starting", "paused"):
            self.metrics.state = "running"
        return frozenset([unique_topic(self.topic)])

    async def _prepare(self, meta: TopicMetadata, reader: AvroSchema) -> bool:
        """Make the table fit ``reader``; False (and paused) when it cannot."""
        columns = columns_of(typed_schema(reader), reader.json["fields"], meta.key)
        table = SinkTable(self.database, self.spec.table, columns)
        try:
            changes = await table.prepare()
        except SinkSchemaError as exc:
            self._set_error("paused", exc.message)
            self._reader = reader
            log.warning("%s paused: %s", self.name, exc.message)
            return False
        except Exception as exc:
            self._set_error("failing", f"{type(exc).__name__}: {exc}")
            raise
        if changes:
            log.info("%s: %s", self.name, "; ".join(changes))
            self.metrics.changes += changes
        self._table, self._meta, self._reader = table, meta, reader
        return True

    async def _follow_schema(self) -> bool:
        """Before a batch: a newer schema version first gets its columns, so no field of a
        record written with it is dropped by decoding with an older reader."""
        state = self._registry.state
        try:
            latest = state.reader_schema(self.topic)
        except NotFoundError:
            return self._reader is not None
        meta = state.topics.get(self.topic)
        if latest is self._reader or meta is None:
            return self._reader is not None
        return await self._prepare(meta, latest)

    _look_again_at = 0.0

    def _look_again(self) -> bool:
        # Waiting for the dedup agent to create .unique: look every second.
        return not self._subscribed and self._look_again_at > 0 and \
            self._clock() - self._look_again_at >= 1.0

    async def _reset(self) -> None:
        self.metrics.restarts += 1
        self._next.clear()
        self.metrics.positions.clear()  # set again at the next assignment

    async def _assign(self, consumer: GroupConsumer, assigned: set[TopicPartition]
                      ) -> None:
        """Seek each partition to the position committed in the database."""
        table = self._table
        if table is None:
            raise OnepipeError(f"{self.name}: assigned before its table was prepared")
        try:
            positions = await table.positions(self.spec.name, self.topic)
        except Exception as exc:
            self._set_error("failing", f"{type(exc).__name__}: {exc}")
            raise
        for tp in sorted(assigned):
            position = positions.get(tp.partition, 0)
            consumer.seek(tp, position)
            self._next[tp.partition] = position
            self._beyond.pop(tp.partition, None)
            self.metrics.positions[tp.partition] = position
            log.info("%s[%d]: resuming from the database at @%d", tp.topic, tp.partition,
                     position)
        if self.metrics.state == "failing":
            self.metrics.state = "running"  # reached the database and positioned again


    async def _revoke(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self._next.pop(tp.partition, None)
            # Its position is its next owner's to show (/sinks, onepipe_sink_position):
            # kept here it would go stale, beside the one that moves on.
            self.metrics.positions.pop(tp.partition, None)

    # ------------------------------------------------------------------ batch
    async def _process(self, consumer: GroupConsumer, batches: Batches) -> None:
        self._check_positions(consumer)
        if not batches:
            return
        if not await self._follow_schema():
            # Paused: stop fetching. A later schema version is looked at again
            # (_wanted), and a new assignment reads from the database's positions.
            consumer.unsubscribe()
            self._subscribed = frozenset()
            self._next.clear()
            self.metrics.positions.clear()  # its partitions are no longer assigned here
            return
        table, meta, reader = self._table, self._meta, self._reader
        if table is None or meta is None or reader is None:
            return
        rows: list[SinkRow] = []
        positions: dict[int, int] = {}
        undecodable = 0
        kept: dict[TopicPartition, list[ConsumerRecord[Any, Any]]] = {}
        for tp, records in batches.items():
            if tp.partition not in self._next:
                continue  # revoked while fetched: the next owner reads it from its position
            fresh = [r for r in records if r.offset >= self._next[tp.partition]]
            if fresh:
                kept[tp] = fresh
        # A schema registered on another worker moments ago: wait for our replica (one
        # bounded wait for the whole batch) rather than count its rows undecodable and
        # commit past them.
        await self._registry.await_schemas(
            r.value for records in kept.values() for r in records)
        for tp, records in kept.items():
            self._in_flight.update(((tp.partition, r.offset), r) for r in records)
            built = await asyncio.to_thread(build_rows, meta, reader, table.columns,
                                            self.database.dialect,
                                            self._registry.state.schema_by_id, records)
            rows += built.rows
            undecodable += built.undecodable
            positions[tp.partition] = records[-1].offset + 1
        if not positions:
            return
        try:
            rejected = await table.write(rows, self.spec.name, self.topic, positions,
                                         self._dead_letters)
        except Exception as exc:
            self._set_error("failing", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self._in_flight.clear()
        self.metrics.state = "running"
        self.metrics.rows_written += len(rows) - len(rejected)
        self.metrics.rejected += len(rejected)
        self.metrics.undecodable += undecodable
        self.metrics.batches += 1
        for partition, offset in positions.items():
            self._next[partition] = offset
            self.metrics.positions[partition] = offset
            await self._commit(consumer, TopicPartition(unique_topic(self.topic), partition),
                               offset)

    def _check_positions(self, consumer: GroupConsumer) -> None:
        """A position beyond the log's end means the log is not the one the database
        followed (``.unique`` deleted and recreated, a broker that lost its log): stop and
        say so, never wait silently for offsets that will not come. It must hold for
        ``_BEYOND_SECONDS``: a new partition leader's high watermark can lag a moment."""
        assigned = consumer.assignment()
        now = self._clock()
        for partition, position in self._next.items():
            tp = TopicPartition(unique_topic(self.topic), partition)
            end = consumer.highwater(tp) if tp in assigned else None
            if end is None or position <= end:
                self._beyond.pop(partition, None)
                continue
            if now - self._beyond.setdefault(partition, now) >= _BEYOND_SECONDS:
                message = (f"{unique_topic(self.topic)}[{partition}] ends at @{end} but the "
                           f"database {self.database.where} says this sink is at "
                           f"@{position}: the topic was recreated or the broker lost its "
                           f"log. Delete this sink's rows from {POSITIONS} (and its table, "
                           "to rebuild it) once you know which log is right")
                self._set_error("failing", message)
                raise SinkPositionError(message)

    async def _dead_letters(self, rejected: list[Rejected]) -> None:
        """Refused rows to ``<topic>.dlq`` (acknowledged before the batch commits)."""
        producer = self._producer
        if producer is None:
            raise OnepipeError(f"{self.name} is not running; start() it first")
        sends = []
        for item in rejected:
            partition, offset = item.row.source
            log.warning("%s refused %s[%d]@%d: %s", self.name, unique_topic(self.topic),
                        partition, offset, item.reason)
            record = self._in_flight.get((partition, offset))
            # The record's own headers (onepipe.source: its position in the source topic)
            # and why it is here.
            headers = [*(record.headers if record is not None else ()),
                       (DLQ_SINK, self.spec.name.encode()),
                       (DLQ_REASON, item.reason.encode()[:4096]),
                       (DLQ_UNIQUE, b"%d:%d" % (partition, offset))]
            sends.append(await producer.send(
                dlq_topic(self.topic), record.value if record is not None else None,
                key=record.key if record is not None else None, headers=headers))
        await asyncio.gather(*sends)

    def _set_error(self, state: str, message: str) -> None:
        self.metrics.state = state
        self.metrics.last_error = message
        self.metrics.last_error_at = self._clock()
