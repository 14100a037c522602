"""The running parts a worker's views and agents share."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.metrics_core import Metric

from onepipe.agents.archive import ArchiveMetrics
from onepipe.agents.sink import SinkStatus
from onepipe.app.agent_processes import AgentProcesses
from onepipe.app.lag_monitor import LagMonitor
from onepipe.app.readiness import Readiness
from onepipe.app.settings import Settings
from onepipe.sinks.publish.publisher import Publisher
from onepipe.tables.registry_store import RegistryStore


class MetricSource(Protocol):
    """Adds metric families to ``GET /metrics`` (a prometheus_client collector).

    ``collect`` runs at scrape time on the event loop: it reads live counters and builds
    families, with no I/O and nothing added to any agent's per-record path.
    ``onepipe.app.web.metrics.CounterSource`` turns a metrics dataclass into one.
    """

    def collect(self) -> Iterable[Metric]: ...


@dataclass(slots=True)
class VerifySlot:
    """The latest ``verify`` result this worker knows, shown by ``/status``."""

    #: The verify report as JSON data; None until a verify has run.
    result: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class WorkerContext:
    """Built once per worker; the web views read everything through it."""

    #: The worker's settings.
    settings: Settings
    #: Registry state and writes.
    registry: RegistryStore
    #: Validating producer for registered topics.
    publisher: Publisher
    #: The archive agent's counters, when this worker runs one.
    archive_metrics: Callable[[], ArchiveMetrics] | None = None
    #: Consumer-group lag sampler, when ``monitor_interval_seconds`` > 0.
    lag_monitor: LagMonitor | None = None
    #: Further agents' metrics for ``GET /metrics``; append at start-up, before serving.
    metric_sources: list[MetricSource] = field(default_factory=list)
    #: The last verify run (mutable holder: the context itself is frozen).
    last_verify: VerifySlot = field(default_factory=VerifySlot)
    #: The online sinks this worker runs (and those it cannot), when sinks are on.
    sinks: Callable[[], list[SinkStatus]] | None = None
    #: GET /readyz's checks (broker, registry, partitions); None in bare web apps.
    readiness: Readiness | None = None
    #: The worker's agent processes (``ONEPIPE_AGENT_PROCESSES`` > 1), whose figures
    #: ``/metrics`` shows with its own.
    processes: AgentProcesses | None = None
