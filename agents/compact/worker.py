"""The pool side of pooled compaction: a worker's consumer executing day tasks.

Contract:
- In: ``<app_id>-compact-tasks`` in consumer group ``<app_id>-compact`` (one batch
  consumer per worker process, hosted by the worker runtime). Out: clean day files in
  the lake and one :class:`~onepipe.agents.compact.messages.DayResult` per execution on the
  results partition the task names (onepipe.agents.compact.messages).
- One task at a time: inputs from the lake into this worker's own work dir cache, the
  day SQL of onepipe.agents.compact.day (the compactor's own code), the day files into the lake
  under a fresh attempt id, the result (the day version, or the error message) produced,
  then the task's offset committed.
- **At least once.** A crash or rebalance between the upload and the commit executes the
  task again (here or on the partition's new owner) under another attempt id: harmless,
  the coordinator accepts one result and the other files are swept as orphans. A task of
  a run that has ended finds its staged inputs gone and answers a failure nobody waits
  for. A record that is not a task is logged with its coordinates and skipped.
- Any failure of a task becomes a failure result (the coordinator then runs the task
  itself); the worker goes on with the next task. A Kafka failure restarts consumption
  from the committed offsets.
- Tasks take long: ``max_task_seconds`` is the consumer's ``max_poll_interval``; a task
  running longer gets the worker evicted from the group and the task re-executed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from onepipe.agents.compact.day import DayExecutor
from onepipe.agents.compact.messages import (
    DEFAULT_PARTITIONS,
    DayResult,
    decode_task,
    default_worker_id,
    encode_result,
    ensure_pool_topics,
    new_attempt,
)
from onepipe.agents.compact.plan import DayTask, DayVersion
from onepipe.agents.compact.workdir import remove_stale_runs
from onepipe.schemas.errors import CompactionError, OnepipeError
from onepipe.schemas.topic_names import compact_group, compact_tasks_topic
from onepipe.tables.kafka.clients import KafkaClients
from onepipe.tables.kafka.types import GroupConsumer
from onepipe.tables.lifecycle import Service, cancel_and_wait, close_all

log = logging.getLogger(__name__)

#: Called before a worker executes a task (tests inject failures with it).
BeforeTask = Callable[[DayTask], Awaitable[None]]


class DayTaskWorker(Service):
    """Executes day tasks from the tasks topic; an async context manager."""

    def __init__(self, *, kafka: KafkaClients, app_id: str, executor: DayExecutor,
                 worker_id: str | None = None, partitions: int = DEFAULT_PARTITIONS,
                 replication_factor: int = 1, max_task_seconds: float = 3600.0,
                 before_task: BeforeTask | None = None) -> None:
        self._kafka = kafka
        self._app_id = app_id
        self._executor = executor
        self.worker_id = worker_id or default_worker_id()
        self._partitions = partitions
        self._replication_factor = replication_factor
        self._max_task_seconds = max_task_seconds
        self._before_task = before_task
        self._producer: AIOKafkaProducer | None = None
        self._consumer: GroupConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        #: Task partitions assigned to this worker now.
        self.assignment: frozenset[TopicPartition] = frozenset()
        #: Executions, most recent last (bounded): (run id, ``<topic>/<day>``, attempt,
        #: error or None).
        self.executed: deque[tuple[str, str, str, str | None]] = deque(maxlen=10_000)

    async def start(self) -> None:
        """Create the topics, join the group, start executing; idempotent."""
        if self._consumer is not None:
            return
        await ensure_pool_topics(self._kafka, self._app_id, partitions=self._partitions,
                                 replication_factor=self._replication_factor)
        stale = await asyncio.to_thread(remove_stale_runs,
                                        self._executor.config.work_dir / "runs")
        if stale:
            log.info("removed %d run folder(s) of crashed day tasks", stale)
        group = compact_group(self._app_id)
        producer = self._kafka.producer(f"{group}-{self.worker_id}", linger_ms=0)
        # A task may take long: the poll interval is the task's limit; one task per fetch,
        # answered as soon as one is there (not the batch agents' 256 KiB minimum).
        # On aiokafka whatever the batch agents use: it rejoins a rebalance from its own
        # task while a day task runs; librdkafka would serve the rebalance only at the
        # next fetch, after the task, and hold every other worker's join (its rebalance
        # timeout being the poll interval: up to the task limit) - no task could move.
        kafka = dataclasses.replace(self._kafka, consumer_client="aiokafka")
        consumer = kafka.group_consumer(
            group, client_id=f"{group}-{self.worker_id}",
            max_poll_interval_ms=int(self._max_task_seconds * 1000), fetch_max_wait_ms=500,
            fetch_min_bytes=1, max_partition_fetch_bytes=1024 * 1024)
        self._producer, self._consumer = producer, consumer
        try:
            await producer.start()
            await consumer.start()
            consumer.subscribe([compact_tasks_topic(self._app_id)], listener=_Listener(self))
        except BaseException:
            await self.stop()
            raise
        self._task = asyncio.create_task(self._run(consumer, producer),
                                         name=f"compact-worker-{self.worker_id}")

    async def stop(self) -> None:
        """Abandon the task in hand (it is redelivered), leave the group; harmless twice."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        self.assignment = frozenset()
        await close_all(consumer, producer)

    async def _run(self, consumer: GroupConsumer, producer: AIOKafkaProducer) -> None:
        """The consume loop; after a failure it resumes from the committed offsets (the
        task in hand is executed again: at least once)."""
        while True:
            try:
                await self._consume(consumer, producer)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("compaction worker %s failed; resuming from the committed "
                              "offsets", self.worker_id)
                await asyncio.sleep(1.0)  # do not spin on a failure that persists
                try:
                    await consumer.seek_to_committed()
                except (KafkaError, IllegalStateError) as again:
                    log.warning("compaction worker %s cannot seek yet: %r", self.worker_id,
                                again)

    async def _consume(self, consumer: GroupConsumer, producer: AIOKafkaProducer) -> None:
        while True:
            # One task at a time: the others stay on their partitions, where a rebalance
            # can still move them to an idle worker.
            batches = await consumer.getmany(timeout_ms=500, max_records=1)
            for tp, records in batches.items():
                for record in records:
                    await self._handle(producer, tp, record.offset, record.value)
                    try:
                        await consumer.commit({tp: record.offset + 1})
                    except (CommitFailedError, IllegalStateError) as exc:
                        # Rebalanced meanwhile: the new owner executes the task again.
                        log.warning("compaction worker %s could not commit %s[%d]@%d: %r",
                                    self.worker_id, tp.topic, tp.partition, record.offset, exc)

    async def _handle(self, producer: AIOKafkaProducer, tp: TopicPartition, offset: int,
                      value: bytes | None) -> None:
        try:
            message = decode_task(value)
        except CompactionError as exc:
            log.warning("compaction worker %s skips %s[%d]@%d: %s", self.worker_id, tp.topic,
                        tp.partition, offset, exc.message)
            return
        task = message.task
        attempt = new_attempt()
        log.info("compaction worker %s runs day %s of %s (run %s) from %s[%d]@%d",
                 self.worker_id, task.date, task.topic, task.run_id, tp.topic, tp.partition,
                 offset)
        day: DayVersion | None = None
        error: str | None = None
        try:
            if self._before_task is not None:
                await self._before_task(task)
            day = await self._executor.run(task, attempt=attempt)
        except OnepipeError as exc:
            error = exc.message
            log.warning("day %s of %s (run %s) failed on %s: %s", task.date, task.topic,
                        task.run_id, self.worker_id, error)
        except Exception as exc:
            # Reported to the coordinator (which runs the task itself), not swallowed; the
            # worker goes on with the next task.
            error = repr(exc)
            log.exception("day %s of %s (run %s) failed on %s", task.date, task.topic,
                          task.run_id, self.worker_id)
        finally:
            # The inputs are single-use here: the day's next version has other files.
            await self._executor.forget([*task.old_files, *(
                p for p in (task.winners_file, task.keys_file) if task.staged and p)])
        self.executed.append((task.run_id, f"{task.topic}/{task.date}", attempt, error))
        result = DayResult(task.run_id, task.topic, task.date, task.seq, attempt,
                           self.worker_id, day, error)
        try:
            await producer.send_and_wait(message.reply_to, encode_result(result),
                                         key=f"{task.topic}/{task.date}".encode(),
                                         partition=message.reply_partition)
        except (AssertionError, ValueError, TypeError) as exc:
            # aiokafka asserts the partition exists: a task naming a wrong reply partition
            # cannot be answered, and retrying it would loop forever.
            log.warning("compaction worker %s cannot answer %s[%d]@%d to %s[%d]: %r",
                        self.worker_id, tp.topic, tp.partition, offset, message.reply_to,
                        message.reply_partition, exc)

    def _assigned(self, assigned: set[TopicPartition]) -> None:
        self.assignment = frozenset(assigned)
        log.info("compaction worker %s executes tasks of partitions %s", self.worker_id,
                 sorted(tp.partition for tp in assigned))


class _Listener(ConsumerRebalanceListener):
    def __init__(self, worker: DayTaskWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._worker.assignment = frozenset()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._worker._assigned(assigned)

