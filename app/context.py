"""The running parts a worker's views and agents share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agents.archive import ArchiveMetrics
from agents.publisher import Publisher
from app.settings import Settings
from tables.registry_store import RegistryStore


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
