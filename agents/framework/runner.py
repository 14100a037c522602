"""Running one declared agent in a worker: a batch agent of its own, with its own group.

The contract is the package's (onepipe.agents.framework). This module is the Kafka side:
the group ``<app_id>-agent-<name>`` over the agent's registered topics, the changelog
``<app_id>-<name>-changelog`` of a stateful agent (compacted, partition p = input
partition p), the stores opened and recovered on assignment
(``<data_dir>/state/<name>/<topic>-<partition>``, onepipe.tables.state), and the commit
of each partition batch the processor (onepipe.agents.framework.processor) leaves:

1. the outputs (sends, closed windows' emits), every ack awaited;
2. the state changes to the changelog partition, every ack awaited;
3. a position marker, when the batch changed state or the last marker of this partition
   is older than :data:`MARKER_EVERY` seconds (a fresh data dir then re-reads little),
   its ack awaited (offset m);
4. the changes and the position (next offset, m + 1, stream time) into RocksDB in one
   WriteBatch (without a marker: the position only, the changelog offset unchanged);
5. the group offset (lag monitoring; for an agent without state it is the position).

The partitions of one fetch are processed one after the other, then committed together:
each partition's steps stay in this order, the partitions' round trips overlap (4
partitions: 3 round trips to the broker instead of 12), and step 5 is one commit.

A crash anywhere before 3 leaves entries after the last marker, which recovery discards:
the batch is read again and its state changes are made once; its outputs are sent again
(at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from onepipe.agents.batch.agent import BatchAgent, Batches
from onepipe.agents.batch.produce import build_partition
from onepipe.agents.framework.declare import AgentSpec
from onepipe.agents.framework.metrics import AgentMetrics
from onepipe.agents.framework.processor import AgentProcessor, Outcome
from onepipe.schemas.errors import NotFoundError, OnepipeError
from onepipe.schemas.registry_state import RegistryState
from onepipe.schemas.topic_names import agent_group, changelog_topic
from onepipe.sinks.publish.publisher import Publisher
from onepipe.tables.kafka.clients import KafkaClients
from onepipe.tables.kafka.topics import ensure_topic
from onepipe.tables.kafka.types import GroupConsumer
from onepipe.tables.registry_store import RegistryStore
from onepipe.tables.state import (
    MARKER_KEY,
    PartitionState,
    Position,
    StateStore,
    encode_marker,
    recover,
)

__all__ = ["MARKER_EVERY", "AgentRunner"]

log = logging.getLogger(__name__)

#: Share of the rebalance timeout after which a batch in flight when the group asked for
#: its partitions back no longer commits (AgentRunner._check_still_owner).
_FENCE_SHARE = 0.75
#: Seconds of a partition's processing after which a batch that changed no state still
#: writes a position marker (so recovery from a fresh data dir re-reads at most that).
MARKER_EVERY = 5.0


class AgentRunner(BatchAgent[AgentMetrics]):
    """Runs one :class:`AgentSpec` in this worker; an async context manager."""

    kind = "developer"
    recovery = "restarting from its state stores and changelog"

    def __init__(self, spec: AgentSpec, *, kafka: KafkaClients, app_id: str,
                 registry: RegistryStore, data_dir: Path, replication_factor: int = 1,
                 produce_timeout: float = 30.0, max_record_bytes: int | None = None) -> None:
        super().__init__(kafka=kafka, group_id=agent_group(app_id, spec.slug),
                         registry=registry, metrics=AgentMetrics(),
                         max_records=spec.max_records)
        self.spec = spec
        self.changelog = changelog_topic(app_id, spec.slug)
        self._data_dir = data_dir
        self._replication_factor = replication_factor
        self._publisher = Publisher(registry.state, None, produce_timeout,
                                    max_record_bytes=max_record_bytes)
        self.processor = AgentProcessor(
            spec, registry.state, self._publisher.writer, self.metrics,
            wait_for_schema=lambda schema_id: registry.wait_for_schema(schema_id, 5.0))
        self._producer: AIOKafkaProducer | None = None
        self._reader: AIOKafkaConsumer | None = None
        #: Partition states of the assigned partitions (stateful agents only).
        self.states: dict[TopicPartition, PartitionState] = {}
        #: Monotonic time of each partition's last position marker.
        self._marked: dict[TopicPartition, float] = {}
        #: Monotonic time the group asked for partitions back, while a batch holds them.
        self._revoke_asked: float | None = None
        #: Input topic -> partition count (and changelog created), once seen.
        self._partitions: dict[str, int] = {}

    @property
    def name(self) -> str:
        return f"agent {self.spec.name}"

    # ------------------------------------------------------------------ hooks
    async def _open(self) -> None:
        self._producer = self._kafka.producer(self._group_id, max_batch_size=1024 * 1024)
        await self._producer.start()
        self._publisher.bind(self._producer)
        if self.spec.stateful:
            # auto_offset_reset="none": a store ahead of its changelog must be noticed.
            self._reader = self._kafka.reader(f"{self._group_id}-recovery",
                                              auto_offset_reset="none")
            await self._reader.start()

    async def _close(self) -> None:
        reader, self._reader = self._reader, None
        producer, self._producer = self._producer, None
        try:
            await self.processor.close()
            self._close_states(list(self.states))
        finally:
            try:
                if reader is not None:
                    await reader.stop()
            finally:
                self._publisher.bind(None)
                if producer is not None:
                    await producer.stop()

    async def _reset(self) -> None:
        """After a failure: drop the coroutine and the stores; partitions recover again."""
        self.metrics.restarts += 1
        await self.processor.close()
        self._close_states(list(self.states))

    async def _revoke(self, revoked: set[TopicPartition]) -> None:
        # Every batch committed before the lock was released: nothing is pending.
        self._close_states(revoked)

    def _close_states(self, tps: list[TopicPartition] | set[TopicPartition]) -> None:
        for tp in tps:
            state = self.states.pop(tp, None)
            self._marked.pop(tp, None)
            if state is not None:
                state.close()

    async def _wanted(self, consumer: GroupConsumer, state: RegistryState
                      ) -> frozenset[str]:
        """The agent's topics that are registered (with a changelog when stateful)."""
        wanted = set()
        for topic in self.spec.topics:
            meta = state.topics.get(topic)
            if meta is None or not self._wants(topic):
                continue
            try:
                state.reader_schema(topic)
            except NotFoundError:
                continue  # metadata before its schema: wait for the schema
            if topic not in self._partitions:
                count = await ensure_topic(self._kafka, topic, partitions=meta.partitions,
                                           replication_factor=self._replication_factor)
                if self.spec.stateful and not await self._ensure_changelog(topic, count):
                    continue
                self._partitions[topic] = count
            wanted.add(topic)
        return frozenset(wanted)

    async def _ensure_changelog(self, topic: str, partitions: int) -> bool:
        count = await ensure_topic(self._kafka, self.changelog, partitions=partitions,
                                   replication_factor=self._replication_factor,
                                   configs={"cleanup.policy": "compact"})
        if count != partitions:
            log.error("%s does not read %s: it has %d partition(s) but the changelog %s "
                      "has %d; they must match (delete the changelog and the agent's "
                      "state folder %s to rebuild it)", self.name, topic, partitions,
                      self.changelog, count, self.spec.state_folder(self._data_dir))
        return count == partitions

    async def _assign(self, consumer: GroupConsumer, assigned: set[TopicPartition]
                      ) -> None:
        """Recover each assigned partition's store from the changelog, then seek to the
        next offset it has not applied (0 for a new agent: the topic from its start)."""
        if not self.spec.stateful:
            return  # the group's committed offset is the position
        reader = self._reader
        if reader is None:
            raise OnepipeError(f"the {self.name} is not running; start() it first")
        for tp in sorted(assigned):
            if tp in self.states:
                continue
            store = StateStore(self.spec.state_folder(self._data_dir, tp.topic, tp.partition))
            try:
                position = await recover(reader, TopicPartition(self.changelog, tp.partition),
                                         store)
                state = PartitionState(store, self.spec.tables, agent=self.spec.name)
            except BaseException:
                store.close()
                raise
            self.states[tp] = state
            self._marked[tp] = time.monotonic()
            log.info("%s: %s[%d] recovered; reading from offset %d", self.name, tp.topic,
                     tp.partition, position.next_offset,
                     extra={"topic": tp.topic, "partition": tp.partition,
                            "offset": position.next_offset})
            consumer.seek(tp, position.next_offset)

    # ------------------------------------------------------------------ batch
    async def _fetch(self, consumer: GroupConsumer) -> Batches:
        """Gather fetches until ``max_records`` or ``max_wait`` (getmany returns early)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.max_wait.total_seconds()
        gathered: dict[TopicPartition, list[Any]] = {}
        count = 0
        while count < self.spec.max_records:
            left_ms = int((deadline - loop.time()) * 1000)
            if left_ms <= 0:
                break
            try:
                batches = await consumer.getmany(timeout_ms=left_ms,
                                                 max_records=self.spec.max_records - count)
            except KafkaError:
                if not gathered:
                    raise
                # Process what was fetched (the consumer's position is past it); the
                # error shows again at the next fetch.
                log.warning("%s: a fetch failed; processing what was gathered first",
                            self.name, exc_info=True)
                break
            for tp, records in batches.items():
                gathered.setdefault(tp, []).extend(records)
                count += len(records)
        return gathered

    async def _process(self, consumer: GroupConsumer, batches: Batches) -> None:
        assignment = consumer.assignment()
        done: list[tuple[TopicPartition, Outcome, PartitionState | None]] = []
        for tp, records in batches.items():
            if tp not in assignment or (self.spec.stateful and tp not in self.states):
                continue  # revoked while fetched: the new owner reads it again
            state = self.states.get(tp)
            try:
                outcome = await self.processor.process(tp.topic, tp.partition, records, state)
            except Exception:
                log.exception("%s failed on %s[%d]@%d..%d", self.name, tp.topic,
                              tp.partition, records[0].offset, records[-1].offset,
                              extra={"topic": tp.topic, "partition": tp.partition,
                                     "offset": records[0].offset})
                raise
            done.append((tp, outcome, state))
        if not done:
            return
        try:
            async with asyncio.TaskGroup() as group:
                for tp, outcome, state in done:
                    group.create_task(self._commit_batch(tp, outcome, state))
        except BaseExceptionGroup as failed:
            # The first failure (the other partitions' commits were cancelled): the agent
            # restarts from durable state, which holds whole batches only.
            raise failed.exceptions[0] from None
        await self._commit_offsets(consumer, {tp: outcome.next_offset
                                              for tp, outcome, _ in done})  # 5

    async def _commit_batch(self, tp: TopicPartition, outcome: Outcome,
                            state: PartitionState | None) -> None:
        """The commit protocol of the module docstring, steps 1 to 4."""
        producer = self._producer
        if producer is None:
            raise OnepipeError(f"the {self.name} is not running; start() it first")
        for topic, encoded in outcome.sends.items():  # 1
            await self._publisher.send_encoded(topic, encoded)
            self.metrics.sent += len(encoded)
        if state is not None:
            changelog_offset = await self._log_changes(producer, tp, outcome, state)
            state.commit(outcome.next_offset, changelog_offset)  # 4

    async def _log_changes(self, producer: AIOKafkaProducer, tp: TopicPartition,
                           outcome: Outcome, state: PartitionState) -> int | None:
        """Steps 2 and 3: the changes, then a marker; the next changelog offset or None."""
        partition, topic = tp.partition, self.changelog
        # Built batches, not send() per change (~1.7 µs of Python each; agents.batch.produce).
        records = [(key, value, None, None) for key, value in outcome.changes]
        futures = [await producer.send_batch(batch, topic, partition=partition)
                   for batch, _ in build_partition(producer, topic, partition, records)]
        for future in futures:
            await future
        now = time.monotonic()
        if not outcome.changes and now - self._marked.get(tp, now) < MARKER_EVERY:
            return None
        # Only after every change is acknowledged: a marker must never be written after
        # a change that failed (recovery would apply the position without the change).
        self._check_still_owner(tp)
        marker = encode_marker(Position(outcome.next_offset, 0, state.stream_time_ms))
        sent = await producer.send(topic, value=marker, key=MARKER_KEY, partition=partition)
        metadata = await sent
        self._marked[tp] = now
        return int(metadata.offset) + 1

    # ---------------------------------------------------------------- fencing
    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Note when the group asked for the partitions back (the batch in flight holds
        them until it commits), then release them as every batch agent does."""
        self._revoke_asked = time.monotonic()
        try:
            await super().on_revoked(revoked)
        finally:
            self._revoke_asked = None

    def _check_still_owner(self, tp: TopicPartition) -> None:
        """Refuse to make a batch count (its marker) once the group may have given its
        partition to another member.

        Without transactions (tansu has no InitProducerId) nothing fences a member out:
        Apache Kafka removes a member that has not rejoined within the rebalance timeout
        of a rebalance, and its partitions go to others, who recover from the changelog.
        A batch that was still running then must not add a marker after theirs. So when
        the group asked for the partitions back longer ago than most of that timeout, the
        batch fails instead (its entries, with no marker after them, are discarded by
        recovery) and the agent restarts from durable state. Keep batches well within
        ``ONEPIPE_REBALANCE_TIMEOUT`` (fewer ``max_records``, or a larger timeout).
        """
        asked = self._revoke_asked
        bound = _FENCE_SHARE * self._kafka.rebalance_timeout
        if asked is not None and time.monotonic() - asked > bound:
            raise OnepipeError(
                f"{self.name}: the group asked for {tp.topic}[{tp.partition}] back "
                f"{time.monotonic() - asked:.1f}s ago while a batch was still being committed "
                f"(more than {bound:.1f}s of the {self._kafka.rebalance_timeout:.0f}s "
                "rebalance timeout): another member may own it now, so this batch does not "
                "count and the agent restarts from its state; give batches less work "
                "(max_records) or raise ONEPIPE_REBALANCE_TIMEOUT")

