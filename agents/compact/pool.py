"""Day tasks over Kafka: a compaction's days executed by the worker pool, never depending on it.

Contract:
- Topics (formats in onepipe.agents.compact.messages): ``<app_id>-compact-tasks`` (8 partitions
  by default; key ``<topic>/<day>``; value a JSON task message) and
  ``<app_id>-compact-results`` (value a JSON result). Both are created (listing first:
  a metadata request for a missing topic auto-creates it with the wrong partition count)
  by whichever side starts first; results are kept for a day (``retention.ms``).
- :class:`KafkaDayDispatcher` (the coordinator side, a
  :class:`~onepipe.agents.compact.run.DayTaskDispatcher`) sends the staged tasks of one planning
  run, spread round-robin over the task partitions from a random one, each naming the
  results partition this dispatcher reads. It reads that partition from the fetch high
  watermark found at start (a fetch, never ListOffsets, which tansu answers wrongly), so
  it sees every result of every run it sends afterwards, and keeps only results of runs
  it is waiting for (by run id, then topic, day and seq).
  * The first successful result of a task whose files are that task's clean files
    (topic, day, seq, run id) is accepted. A failure result, a malformed one, or no
    result within ``timeout`` seconds of the run's last progress (its send, or its last
    accepted result) makes the dispatcher run the task itself with its own
    :class:`~onepipe.agents.compact.day.DayExecutor` - so a run completes even when no pool
    worker is up. A result arriving for a task already accepted or taken over (late,
    duplicate) is ignored; its files are orphans the compactor's sweep deletes once a
    snapshot with their seq exists (they are never referenced).
  * Sending failures make the dispatcher run every task itself; a failure of a task it
    runs itself fails the run (the compactor publishes nothing; a later run re-plans).
  * Delivery: tasks are produced with acks=all (idempotent where the broker allows);
    a task lost or delivered twice costs a local execution or a duplicate, never data.
  * One dispatcher serves all compactions of a worker: concurrent runs each wait on
    their own run id. Stop the compactions before the dispatcher (the runtime stops the
    scheduler first); a run still waiting gets no more results and, after the timeout,
    runs its remaining tasks itself.
- :class:`DayTaskWorker` (onepipe.agents.compact.worker, re-exported here) is the pool side: a
  batch consumer in group ``<app_id>-compact`` hosted by each worker, executing tasks at
  least once and answering one result per execution.
- Message formats and topic names: onepipe.agents.compact.messages.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
import zlib
from collections import deque
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from onepipe.agents.compact.day import DayExecutor
from onepipe.agents.compact.messages import (
    DEFAULT_PARTITIONS,
    DayResult,
    TaskMessage,
    decode_result,
    encode_task,
    ensure_pool_topics,
    new_attempt,
    result_problem,
)
from onepipe.agents.compact.plan import DayTask, DayVersion
from onepipe.agents.compact.worker import DayTaskWorker
from onepipe.schemas.errors import BrokerError, CompactionError
from onepipe.schemas.topic_names import compact_results_topic, compact_tasks_topic
from onepipe.tables.kafka.clients import KafkaClients
from onepipe.tables.lifecycle import Service, cancel_and_wait, close_all

__all__ = ["DayTaskWorker", "KafkaDayDispatcher", "TaskOutcome"]

log = logging.getLogger(__name__)

#: How long start() waits for the first fetch response of the results partition.
_HIGHWATER_WAIT = 30.0


# ------------------------------------------------------------------ coordinator side


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """Who executed an accepted day task (:attr:`KafkaDayDispatcher.outcomes`)."""

    #: The planning run (DayTask.run_id).
    run_id: str
    #: Kafka topic and day of the task.
    topic: str
    date: str
    #: The worker id of the pool worker, or ``"local"`` for the dispatcher itself.
    executed_by: str
    #: Attempt id in the names of the accepted files.
    attempt: str


class KafkaDayDispatcher(Service):
    """Sends day tasks to the pool and collects results; an async context manager."""

    def __init__(self, *, kafka: KafkaClients, app_id: str, executor: DayExecutor,
                 timeout: float = 300.0, partitions: int = DEFAULT_PARTITIONS,
                 replication_factor: int = 1, local_jobs: int = 1) -> None:
        if timeout <= 0 or local_jobs < 1:
            raise CompactionError(f"timeout must be > 0 and local_jobs >= 1; got {timeout} "
                                  f"and {local_jobs}")
        self._kafka = kafka
        self._app_id = app_id
        self._executor = executor
        self._timeout = timeout
        self._partitions = partitions
        self._replication_factor = replication_factor
        self._local = asyncio.Semaphore(local_jobs)
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._tail_task: asyncio.Task[None] | None = None
        self._task_partitions = 0
        self._reply: TopicPartition | None = None
        self._waiting: dict[str, asyncio.Queue[DayResult]] = {}
        #: Who executed the accepted tasks, most recent last (bounded).
        self.outcomes: deque[TaskOutcome] = deque(maxlen=10_000)

    async def start(self) -> None:
        """Create the topics, find the results high watermark, start reading; idempotent."""
        if self._producer is not None:
            return
        task_partitions, result_partitions = await ensure_pool_topics(
            self._kafka, self._app_id, partitions=self._partitions,
            replication_factor=self._replication_factor)
        self._task_partitions = task_partitions
        name = f"{self._app_id}-compact-dispatch-{uuid.uuid4().hex[:8]}"
        # Each dispatcher reads one results partition; its workers reply there.
        reply = TopicPartition(compact_results_topic(self._app_id),
                               zlib.crc32(name.encode()) % result_partitions)
        producer = self._kafka.producer(name, linger_ms=0)
        consumer = self._kafka.reader(name, fetch_max_wait_ms=200)
        self._producer, self._consumer, self._reply = producer, consumer, reply
        try:
            await producer.start()
            await consumer.start()
            consumer.assign([reply])
            await self._seek_to_highwater(consumer, reply)
        except BaseException:
            await self.stop()
            raise
        self._tail_task = asyncio.create_task(self._tail(consumer), name="compact-dispatch")

    async def stop(self) -> None:
        """Stop reading results and close the clients; harmless twice."""
        task, self._tail_task = self._tail_task, None
        await cancel_and_wait(task)
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        await close_all(consumer, producer)

    @staticmethod
    async def _seek_to_highwater(consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        # The fetch response carries the high watermark; one fetch from the start finds it
        # without reading the partition (records fetched on the way are dropped by the seek).
        await consumer.seek_to_beginning(tp)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _HIGHWATER_WAIT
        while (highwater := consumer.highwater(tp)) is None:
            if loop.time() > deadline:
                raise BrokerError(f"no fetch response for {tp.topic}[{tp.partition}] within "
                                  f"{_HIGHWATER_WAIT:.0f}s; is the broker up?")
            await consumer.getmany(tp, timeout_ms=200, max_records=1)
        consumer.seek(tp, highwater)
        log.info("compaction dispatcher reads results from %s[%d]@%d", tp.topic, tp.partition,
                 highwater)

    async def _tail(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500)
            except KafkaError as exc:
                # Runs waiting meanwhile time out and execute their tasks locally.
                log.warning("compaction dispatcher cannot fetch results: %r; retrying", exc)
                await asyncio.sleep(1.0)  # back off before asking the broker again
                continue
            for records in batches.values():
                for record in records:
                    self._route(record.topic, record.partition, record.offset, record.value)

    def _route(self, topic: str, partition: int, offset: int, value: bytes | None) -> None:
        try:
            result = decode_result(value)
        except CompactionError as exc:
            log.warning("skipping %s[%d]@%d: %s", topic, partition, offset, exc.message)
            return
        queue = self._waiting.get(result.run_id)
        if queue is not None:
            queue.put_nowait(result)

    # -------------------------------------------------------------- one run

    async def run(self, tasks: list[DayTask]) -> list[DayVersion]:
        """Execute the staged ``tasks`` of one planning run; their versions in order."""
        if not tasks:
            return []
        if self._producer is None:
            raise CompactionError("the day-task dispatcher is not started (or was stopped)")
        run_id = tasks[0].run_id
        if any(t.run_id != run_id or not t.staged for t in tasks) or \
                len({t.date for t in tasks}) != len(tasks):
            raise CompactionError("a dispatch takes the staged tasks of one run, one per day")
        queue: asyncio.Queue[DayResult] = asyncio.Queue()
        self._waiting[run_id] = queue
        try:
            return await _Collect(self, tasks, queue).run()
        finally:
            self._waiting.pop(run_id, None)

    async def _send(self, tasks: list[DayTask]) -> bool:
        """Produce the tasks; False when Kafka did not take them all."""
        producer, reply = self._producer, self._reply
        assert producer is not None and reply is not None
        first = random.randrange(self._task_partitions)
        try:
            sent = [await producer.send(
                compact_tasks_topic(self._app_id),
                encode_task(TaskMessage(task, reply.topic, reply.partition)),
                key=f"{task.topic}/{task.date}".encode(),
                # Round-robin from a random partition: a run's tasks reach every member
                # of the group, however few tasks and however the keys would hash.
                partition=(first + i) % self._task_partitions)
                for i, task in enumerate(tasks)]
            await asyncio.gather(*sent)
        except KafkaError as exc:
            log.warning("could not send %d day task(s) of run %s to %s: %r; running them here",
                        len(tasks), tasks[0].run_id, compact_tasks_topic(self._app_id), exc)
            return False
        return True

    async def _run_here(self, task: DayTask) -> tuple[DayVersion, str]:
        attempt = new_attempt()
        async with self._local:
            return await self._executor.run(task, attempt=attempt), attempt


class _Collect:
    """The bookkeeping of one dispatched run (see the module contract)."""

    def __init__(self, dispatcher: KafkaDayDispatcher, tasks: list[DayTask],
                 queue: asyncio.Queue[DayResult]) -> None:
        self.d = dispatcher
        self.tasks = tasks
        self.queue = queue
        self.pending = {t.date: t for t in tasks}
        self.accepted: dict[str, DayVersion] = {}
        self.local: dict[str, tuple[DayTask, asyncio.Task[tuple[DayVersion, str]]]] = {}

    async def run(self) -> list[DayVersion]:
        try:
            if not await self.d._send(self.tasks):
                self._take_over(list(self.pending), "sending failed")
            await self._collect_remote()
            for task, running in self.local.values():
                version, attempt = await running
                self._accept(task, version, "local", attempt)
        finally:
            for _, running in self.local.values():
                running.cancel()
            await asyncio.gather(*(r for _, r in self.local.values()), return_exceptions=True)
        return [self.accepted[t.date] for t in self.tasks]

    async def _collect_remote(self) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.d._timeout
        deadline = loop.time() + timeout
        while self.pending:
            wait = deadline - loop.time()
            if wait <= 0:
                self._take_over(list(self.pending), f"no result within {timeout:.0f}s")
                return
            try:
                result = await asyncio.wait_for(self.queue.get(), wait)
            except TimeoutError:
                continue
            task = self.pending.get(result.date)
            if task is None or result.topic != task.topic or result.seq != task.seq:
                log.info("ignoring a late or duplicate result of day %s of %s (run %s) from "
                         "%s", result.date, result.topic, result.run_id, result.worker)
                continue
            problem = result_problem(result, task)
            if problem is not None or result.day is None:
                log.warning("worker %s did not complete day %s of %s (run %s): %s",
                            result.worker, task.date, task.topic, task.run_id, problem)
                self._take_over([task.date], "the worker failed")
                continue
            del self.pending[task.date]
            self._accept(task, result.day, result.worker, result.attempt)
            deadline = loop.time() + timeout  # progress: the pool is alive

    def _take_over(self, dates: list[str], why: str) -> None:
        if dates:
            log.warning("running %d day task(s) of %s (run %s) here: %s", len(dates),
                        self.tasks[0].topic, self.tasks[0].run_id, why)
        for date in dates:
            task = self.pending.pop(date)
            self.local[date] = (task, asyncio.create_task(self.d._run_here(task),
                                                          name=f"compact-day-{date}"))

    def _accept(self, task: DayTask, version: DayVersion, by: str, attempt: str) -> None:
        self.accepted[task.date] = version
        self.d.outcomes.append(TaskOutcome(task.run_id, task.topic, task.date, by, attempt))
