"""Periodic compaction in the worker: every registered topic with a raw lake, every interval.

Contract:
- Every ``interval`` seconds (at wall-clock multiples of it) the scheduler of each worker
  looks at the registry's topics (onepipe.tables.registry_store state, followed live); for each
  topic with anything under ``raw/<topic>/`` it runs one
  :class:`~onepipe.agents.compact.compactor.Compactor` - through the worker pool when given a
  :class:`~onepipe.agents.compact.run.DayTaskDispatcher`, locally otherwise. Topics run one after
  the other; a topic that fails is logged and retried at the next interval, the others
  go on.
- **One run per topic per interval across workers**, cheaply: before compacting, a worker
  claims the slot with ``put_if_absent`` of ``clean/<topic>/_schedule/<slot>.json`` (slot
  = ``floor(now / interval)``, onepipe.sinks.lake.iceberg.layout). Exactly one worker
  creates each claim (onepipe.sinks.lake.store), so only it runs; the others skip the
  topic until the next slot. The winner deletes older claims. Why a claim in the lake, and
  not a hash share of topics per worker: it needs no membership knowledge (the share would
  follow the ``<app_id>-compact`` group, which is absent when task workers are off, and
  wrong during rebalances), works the same on a folder and on S3, and has a natural expiry:
  a winner that crashes holds its slot only until the next one. What it does not
  prevent: clocks that disagree across a slot boundary, or a run longer than the interval,
  can start a second run of a topic. That is safe (the snapshot commit lets one win, the
  other re-plans: onepipe.agents.compact.compactor) and only wasteful.
- ``interval`` 0 turns the scheduler off (start does nothing). start/stop are
  idempotent; stop cancels a run in progress (it publishes nothing; its files are swept
  by a later run).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import orjson

from onepipe.agents.compact.compactor import Compactor
from onepipe.agents.compact.config import CompactionConfig
from onepipe.agents.compact.run import CompactionReport, DayTaskDispatcher
from onepipe.schemas.errors import NotFoundError, OnepipeError
from onepipe.sinks.lake.iceberg.layout import claim_path, claim_prefix, parse_claim_path
from onepipe.sinks.lake.raw_layout import raw_topic_prefix
from onepipe.sinks.lake.store import LakeStore
from onepipe.tables.lifecycle import Service, cancel_and_wait
from onepipe.tables.registry_store import RegistryStore

log = logging.getLogger(__name__)


class CompactionScheduler(Service):
    """Compacts every topic of the registry periodically; an async context manager."""

    def __init__(self, *, registry: RegistryStore, lake: LakeStore, config: CompactionConfig,
                 interval: float, dispatcher: DayTaskDispatcher | None = None,
                 worker_id: str = "", topics: Iterable[str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._registry = registry
        self._lake = lake
        self._config = config
        self.interval = interval
        self._dispatcher = dispatcher
        self._worker_id = worker_id
        #: When given, only these topics are compacted (tests).
        self._only = frozenset(topics) if topics is not None else None
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        #: Runs this scheduler made, most recent last (bounded).
        self.reports: deque[CompactionReport] = deque(maxlen=1000)
        #: Topic runs skipped because another worker claimed the slot.
        self.skipped = 0
        #: Topic runs that failed.
        self.failures = 0

    async def start(self) -> None:
        """Start the periodic loop (nothing when ``interval`` is 0); idempotent."""
        if self.interval <= 0 or self._task is not None:
            return
        self._task = asyncio.create_task(self._loop(), name="compaction-scheduler")
        log.info("compaction scheduler runs every %.0fs", self.interval)

    async def stop(self) -> None:
        """Stop the loop, cancelling a run in progress; harmless twice."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _loop(self) -> None:
        while True:
            # Wake at the next slot boundary: every worker then contends for the same slot.
            await asyncio.sleep(self.interval - self._clock() % self.interval)
            await self.tick()

    async def tick(self) -> list[CompactionReport]:
        """One pass over the registry's topics (what the loop does each interval)."""
        slot = int(self._clock() // self.interval) if self.interval > 0 else 0
        reports = []
        for topic in sorted(self._registry.state.topics):
            if self._only is not None and topic not in self._only:
                continue
            try:
                report = await self._maybe_compact(topic, slot)
            except OnepipeError as exc:
                self.failures += 1
                log.warning("scheduled compaction of %s failed: %s; retrying next interval",
                            topic, exc.message)
                continue
            except Exception:
                # One topic's unexpected failure must not stop the others or the loop.
                self.failures += 1
                log.exception("scheduled compaction of %s failed; retrying next interval",
                              topic)
                continue
            if report is not None:
                reports.append(report)
                self.reports.append(report)
        return reports

    async def _maybe_compact(self, topic: str, slot: int) -> CompactionReport | None:
        if not await self._lake.list_dirs(raw_topic_prefix(topic)):
            return None  # nothing archived (yet)
        if not await self._claim(topic, slot):
            self.skipped += 1
            log.debug("compaction of %s in slot %d is another worker's", topic, slot)
            return None
        state = self._registry.state
        meta = state.topic_metadata(topic)
        try:
            schema = state.reader_schema(topic)
        except NotFoundError:
            schema = None  # no typed columns; partition_time must then be `kafka`
        report = await Compactor(self._lake, meta, schema, self._config,
                                 dispatcher=self._dispatcher).run()
        if report.seq is not None:
            log.info("scheduled compaction of %s committed sequence number %d (%d day(s), %d raw "
                     "record(s))", topic, report.seq, len(report.days_written), report.rows_in)
        return report

    async def _claim(self, topic: str, slot: int) -> bool:
        body = orjson.dumps({"worker": self._worker_id, "slot": slot,
                             "at": datetime.now(tz=UTC).isoformat()})
        if not await self._lake.put_if_absent(claim_path(topic, slot), body):
            return False
        for obj in await self._lake.list(claim_prefix(topic)):
            old = parse_claim_path(obj.path)
            if old is not None and old < slot:
                await self._lake.delete(obj.path)
        return True
