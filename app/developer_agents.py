"""The developers' agents one worker hosts: loaded, checked, started, stopped, exported.

Contract (the agents' own is onepipe.agents.framework's):
- Built with the runtime: the modules of the ``agents`` setting (``ONEPIPE_AGENTS``), the
  entry points of the group ``onepipe.agents``, and the built-in example with
  ``example_agents``, are imported then; one that does not import, or declares no agent,
  raises :class:`~onepipe.agents.framework.AgentLoadError` before anything connects.
- :meth:`DeveloperAgents.check` runs once the registry replayed (before the web server
  opens): an unregistered topic, a ``record=`` type that does not fit, a stateful agent
  over several topics stop the start with one message naming each.
- :meth:`DeveloperAgents.start` starts one runner per agent after the other agents;
  :meth:`DeveloperAgents.stop` stops them all at once. The lag monitor follows each
  agent's group ``<app_id>-agent-<name>`` on its topics, readiness waits for their
  assignments, and ``/metrics`` exports ``onepipe_agent_<counter>_total{agent=...}``.
"""

from __future__ import annotations

import asyncio
import logging

from onepipe.agents.framework import (
    AGENT_COUNTERS,
    AgentRunner,
    AgentSpec,
    check_agents,
    load_agents,
)
from onepipe.app.context import WorkerContext
from onepipe.app.lag_monitor import LagMonitor, MonitoredGroup
from onepipe.app.settings import Settings
from onepipe.app.web.metrics import LabelledCounterSource
from onepipe.schemas.topic_names import agent_group
from onepipe.tables.registry_store import RegistryStore

__all__ = ["EXAMPLE_AGENTS", "DeveloperAgents", "agent_modules"]

log = logging.getLogger(__name__)

#: The module of the built-in example agent (setting ``example_agents``).
EXAMPLE_AGENTS = "onepipe.agents.framework.example"


def agent_modules(settings: Settings) -> list[str]:
    """The modules the settings name: ``agents`` (comma-separated), then the example."""
    modules = [m.strip() for m in settings.agents.split(",") if m.strip()]
    return [*modules, *([EXAMPLE_AGENTS] if settings.example_agents else [])]


class DeveloperAgents:
    """The runners of one worker's developer agents."""

    def __init__(self, settings: Settings, registry: RegistryStore,
                 lag_monitor: LagMonitor | None, context: WorkerContext, *,
                 enabled: bool = True) -> None:
        self._settings = settings
        self._registry = registry
        #: What the loaded modules declared, in load order (none when not ``enabled``:
        #: an agent process's, onepipe.app.agent_processes).
        self.specs: list[AgentSpec] = load_agents(agent_modules(settings)) if enabled else []
        #: One per spec once started.
        self.runners: list[AgentRunner] = []
        for spec in self.specs:
            if lag_monitor is not None:
                lag_monitor.follow(MonitoredGroup(agent_group(settings.app_id, spec.slug),
                                                  frozenset(spec.topics).__contains__))
        if self.specs:
            context.metric_sources.append(LabelledCounterSource(
                "agent", "agent", lambda: [(r.spec.name, r.metrics) for r in self.runners],
                AGENT_COUNTERS))

    async def check(self) -> None:
        """The agents against the replayed registry (AgentLoadError)."""
        check_agents(self.specs, self._registry.state)

    async def start(self) -> None:
        settings = self._settings
        self.runners = []
        for spec in self.specs:
            runner = AgentRunner(spec, kafka=settings.kafka, app_id=settings.app_id,
                                 registry=self._registry, data_dir=settings.data_dir,
                                 replication_factor=settings.replication_factor,
                                 produce_timeout=settings.produce_timeout,
                                 max_record_bytes=settings.max_record_bytes)
            self.runners.append(runner)  # before its start: a failed start is stopped too
            await runner.start()
        if self.specs:
            log.info("developer agents started: %s", ", ".join(s.name for s in self.specs))

    async def stop(self) -> None:
        """Stop every runner at once (each commits after every batch: nothing pending);
        their counters stay readable."""
        runners = self.runners
        results = await asyncio.gather(*(r.stop() for r in runners), return_exceptions=True)
        for runner, result in zip(runners, results, strict=True):
            if isinstance(result, Exception):
                log.error("%s failed to stop cleanly: %r", runner.name, result)
