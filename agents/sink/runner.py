"""The sinks of a worker: one sink agent per catalog sink, following the registry.

Every second (and at start) the runner compares the sinks the registry declares with the
agents it runs: a new sink gets an agent (its DSN read from the environment variable the
catalog names), a removed or changed one is stopped. A sink whose variable is unset, or
whose DSN does not fit its kind, gets no agent and is reported as ``unconfigured`` with
the reason - on ``/status``, ``/metrics`` and ``onepipe sinks`` - never skipped silently.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from onepipe.agents.sink.agent import SinkAgent, SinkMetrics
from onepipe.schemas.errors import OnepipeError
from onepipe.schemas.metadata import SinkSpec
from onepipe.schemas.topic_names import sink_group
from onepipe.sinks.db import Database, open_database
from onepipe.tables.kafka import KafkaClients
from onepipe.tables.lifecycle import Service, cancel_and_wait
from onepipe.tables.registry_store import RegistryStore

log = logging.getLogger(__name__)

__all__ = ["SinkRunner", "SinkStatus", "combined_statuses", "counted_status"]

_FOLLOW_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class SinkStatus:
    """One declared sink as this worker sees it."""

    topic: str
    spec: SinkSpec
    #: The database without credentials; None when unconfigured.
    where: str | None
    metrics: SinkMetrics

    def to_json(self) -> dict[str, object]:
        m = self.metrics
        return {"topic": self.topic, "sink": self.spec.name, "kind": self.spec.kind,
                "table": self.spec.table, "dsn_env": self.spec.dsn_env, "where": self.where,
                "state": m.state, "last_error": m.last_error,
                "last_error_at": m.last_error_at or None, "rows_written": m.rows_written,
                "rejected": m.rejected, "undecodable": m.undecodable, "batches": m.batches,
                "restarts": m.restarts,
                "positions": {str(p): o for p, o in sorted(m.positions.items())},
                "changes": list(m.changes)}


#: A sink's states, the one that most needs a person first: several processes' agents of
#: one sink show as the first of their states in this order.
_STATES = ("paused", "failing", "unconfigured", "starting", "running")
#: The counters of a sink that add up across processes.
_COUNTERS = ("rows_written", "rejected", "undecodable", "batches", "restarts")


def counted_status(status: SinkStatus) -> SinkStatus:
    """``status``'s counters alone, state ``running`` (the one that needs no one): what an
    agent process that exited had counted, carried into its worker's sums (no error,
    position or change: those were its own, and :func:`combined_statuses` would show
    them as current)."""
    metrics = SinkMetrics(state="running")
    for name in _COUNTERS:
        setattr(metrics, name, getattr(status.metrics, name))
    return SinkStatus(status.topic, status.spec, status.where, metrics)


def combined_statuses(statuses: Iterable[SinkStatus]) -> list[SinkStatus]:
    """The statuses of several processes' agents of each sink as one per sink (a worker
    and its agent processes each run an agent of every sink, with a share of its
    partitions): counters add up (each process's since it started), positions are each
    process's own partitions (one that just moved keeps the higher: a database position
    only grows), the state is the one that most needs a person, the last error the
    latest."""
    by_sink: dict[tuple[str, str], list[SinkStatus]] = {}
    for status in statuses:
        by_sink.setdefault((status.topic, status.spec.name), []).append(status)
    out = []
    for (topic, _), parts in sorted(by_sink.items()):
        merged = SinkMetrics(state=min((p.metrics.state for p in parts), key=_state_rank))
        for part in parts:
            m = part.metrics
            for name in _COUNTERS:
                setattr(merged, name, getattr(merged, name) + getattr(m, name))
            if m.last_error is not None and m.last_error_at >= merged.last_error_at:
                merged.last_error, merged.last_error_at = m.last_error, m.last_error_at
            for partition, offset in m.positions.items():
                merged.positions[partition] = max(offset, merged.positions.get(partition, offset))
            merged.changes.extend(c for c in m.changes if c not in merged.changes)
        where = next((p.where for p in parts if p.where is not None), None)
        out.append(SinkStatus(topic, parts[0].spec, where, merged))
    return out


def _state_rank(state: str) -> int:
    return _STATES.index(state) if state in _STATES else len(_STATES)


class SinkRunner(Service):
    """Runs the sink agents the registry declares; an async context manager."""

    def __init__(self, *, kafka: KafkaClients, app_id: str, registry: RegistryStore,
                 replication_factor: int = 1, environ: Mapping[str, str] | None = None,
                 open_db: Callable[[str, str], Database] = open_database) -> None:  # type: ignore[assignment]  # kind is checked by the catalog
        self._kafka, self._app_id, self._registry = kafka, app_id, registry
        self._replication_factor = replication_factor
        self._environ = environ if environ is not None else os.environ
        self._open_db = open_db
        self.agents: dict[tuple[str, SinkSpec], SinkAgent] = {}
        self._unconfigured: dict[tuple[str, SinkSpec], SinkMetrics] = {}
        self._task: asyncio.Task[None] | None = None
        self._generation = -1

    def statuses(self) -> list[SinkStatus]:
        out = [SinkStatus(topic, spec, agent.database.where, agent.metrics)
               for (topic, spec), agent in self.agents.items()]
        out += [SinkStatus(topic, spec, None, metrics)
                for (topic, spec), metrics in self._unconfigured.items()]
        return sorted(out, key=lambda s: (s.topic, s.spec.name))

    async def start(self) -> None:
        await self.follow()
        self._task = asyncio.create_task(self._loop(), name="sink-runner")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        agents, self.agents = self.agents, {}

        async def stop_one(agent: SinkAgent) -> None:
            try:
                await agent.stop()
            except Exception:
                log.exception("%s did not stop cleanly", agent.name)

        # At once: each waits for its batch and its group leave; the stop has a bound.
        await asyncio.gather(*(stop_one(agent) for agent in agents.values()))

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(_FOLLOW_SECONDS)
            try:
                await self.follow()
            except Exception:
                log.exception("following the registry's sinks failed; trying again")

    async def follow(self) -> None:
        """Start agents for new sinks, stop those no longer declared."""
        state = self._registry.state
        if state.generation == self._generation:
            return
        self._generation = state.generation
        wanted = {(topic, spec) for topic, meta in state.topics.items() for spec in meta.sinks}
        for key in [k for k in self.agents if k not in wanted]:
            agent = self.agents.pop(key)
            log.info("%s is no longer declared; stopping it", agent.name)
            await agent.stop()
        self._unconfigured = {k: v for k, v in self._unconfigured.items() if k in wanted}
        for topic, spec in sorted(wanted - set(self.agents), key=lambda k: (k[0], k[1].name)):
            dsn = self._environ.get(spec.dsn_env)
            if not dsn:
                self._unconfigure(topic, spec, f"environment variable {spec.dsn_env} is not "
                                  f"set; set it to the {spec.kind} DSN of sink {spec.name}")
                continue
            try:
                database = self._open_db(spec.kind, dsn)
            except OnepipeError as exc:
                self._unconfigure(topic, spec, f"{spec.dsn_env}: {exc.message}")
                continue
            agent = SinkAgent(kafka=self._kafka, group_id=sink_group(self._app_id, topic,
                                                                     spec.name),
                              registry=self._registry, topic=topic, spec=spec,
                              database=database, replication_factor=self._replication_factor)
            try:
                await agent.start()
            except asyncio.CancelledError:
                await agent.stop()  # stopped while starting: release what started
                raise
            except Exception as exc:
                # Kafka unreachable, say: reported, and tried again at the next look.
                log.exception("%s did not start", agent.name)
                await agent.stop()
                self._not_running(topic, spec, "failing",
                                  f"did not start: {type(exc).__name__}: {exc}")
                self._generation = -1
                continue
            self._unconfigured.pop((topic, spec), None)
            self.agents[(topic, spec)] = agent
            log.info("%s started", agent.name)

    def _unconfigure(self, topic: str, spec: SinkSpec, reason: str) -> None:
        if (topic, spec) not in self._unconfigured:
            log.error("sink %s/%s is not running: %s", topic, spec.name, reason)
        self._not_running(topic, spec, "unconfigured", reason)

    def _not_running(self, topic: str, spec: SinkSpec, state: str, reason: str) -> None:
        self._unconfigured[(topic, spec)] = SinkMetrics(state=state, last_error=reason)
