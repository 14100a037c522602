"""``onepipe agents``: the developers' agents a worker with these settings would run.

Loads the modules of ``ONEPIPE_AGENTS``, the entry points of the group
``onepipe.agents`` and, with ``ONEPIPE_EXAMPLE_AGENTS``, the example - exactly as the
worker does (onepipe.app.developer_agents) - and prints one row per agent: name, kind,
topics in, topics out (sends and window targets), state stores, module. No broker is
needed: the registry checks run at the worker's start. A module that does not import
or declares no agent is an ``error:`` with exit status 2.
"""

from __future__ import annotations

from datetime import timedelta

from rich.console import Console
from rich.table import Table

from onepipe.agents.framework import AgentSpec, load_agents
from onepipe.app.developer_agents import agent_modules
from onepipe.app.settings import Settings
from onepipe.tables.state import WindowTable

__all__ = ["describe_stores", "run_agents"]


def describe_stores(spec: AgentSpec) -> str:
    """The agent's tables: ``name`` or ``name (tumbling 1:00:00, grace 0:10:00)``."""
    parts = []
    for table in spec.tables:
        if isinstance(table, WindowTable):
            window = table.window
            size = timedelta(milliseconds=window.size_ms)
            shape = (f"tumbling {size}" if window.tumbling else
                     f"hopping {size} every {timedelta(milliseconds=window.step_ms)}")
            parts.append(f"{table.name} ({shape}, grace "
                         f"{timedelta(milliseconds=table.grace_ms)})")
        else:
            parts.append(table.name)
    return ", ".join(parts) or "-"


def run_agents(settings: Settings) -> int:
    specs = load_agents(agent_modules(settings))
    if not specs:
        print("no agents: set ONEPIPE_AGENTS to the modules that declare them (or install "
              "a package with entry points in the group onepipe.agents)")
        return 0
    table = Table(title="developers' agents")
    for column in ("name", "kind", "topics in", "topics out", "state stores", "module"):
        table.add_column(column)
    for spec in specs:
        table.add_row(spec.name, spec.kind, ", ".join(spec.topics),
                      ", ".join(spec.outputs) or "-", describe_stores(spec), spec.module)
    Console().print(table)
    return 0
