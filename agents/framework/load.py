"""Finding the agents a worker runs, and checking them against the registry at start.

- :func:`load_agents` imports the modules named by the ``agents`` setting
  (``ONEPIPE_AGENTS``, comma-separated) and every entry point of the group
  ``onepipe.agents`` (a module, ``pkg.mod`` or ``pkg.mod:attr``); the agents are those the
  decorators declared in those modules or their submodules. A module that does not
  import, or declares no agent, is an :class:`AgentLoadError` naming the module, where
  its name came from, and the cause.
- :func:`check_agents` runs once the registry has replayed, before the worker is ready:
  every topic read, sent to or emitted to is registered; ``record=`` types fit their
  topic's reader schema (onepipe.schemas.typed); an agent with state reads one topic.
  All problems are reported at once, in one :class:`AgentLoadError`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Sequence

from onepipe.agents.framework.declare import AgentSpec, declared
from onepipe.schemas.errors import ConfigError, NotFoundError
from onepipe.schemas.registry_state import RegistryState
from onepipe.schemas.typed import RecordTypeError, check_record_type

__all__ = ["ENTRY_POINT_GROUP", "AgentLoadError", "check_agents", "load_agents"]

#: The entry-point group packages declare their agent modules in.
ENTRY_POINT_GROUP = "onepipe.agents"
_REGISTER = "register it: onepipe apply <catalog folder>"


class AgentLoadError(ConfigError):
    """Agents that cannot be loaded or do not fit the registry; the worker does not start."""

    code = "agent_load_error"


def load_agents(modules: Sequence[str], *, entry_points: bool = True,
                source: str = "ONEPIPE_AGENTS") -> list[AgentSpec]:
    """Import ``modules`` (and the entry points) and return the agents they declared.

    ``source`` names where ``modules`` came from, for messages.
    """
    named = [(m.strip(), source) for m in modules if m.strip()]
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            named.append((ep.value.partition(":")[0].strip(),
                          f"entry point {ep.name!r} of group {ENTRY_POINT_GROUP!r} "
                          f"(package {ep.dist.name if ep.dist else '?'})"))
    specs: dict[str, AgentSpec] = {}
    for module, origin in named:
        _import(module, origin)
        found = [s for s in declared()
                 if s.module == module or s.module.startswith(module + ".")]
        if not found:
            raise AgentLoadError(f"module {module!r} (from {origin}) declares no agent; did "
                                 "you forget to import the module that does?")
        for spec in found:
            specs.setdefault(spec.slug, spec)
    return list(specs.values())


def _import(module: str, origin: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        hint = ("" if exc.name != module.partition(".")[0] else
                "; is its package installed in this environment (or on PYTHONPATH)?")
        raise AgentLoadError(f"cannot import agent module {module!r} (from {origin}): "
                             f"{exc}{hint}") from exc
    except Exception as exc:  # noqa: BLE001 - any failure of a user's module is reported, with its cause
        raise AgentLoadError(f"agent module {module!r} (from {origin}) failed while "
                             f"importing: {type(exc).__name__}: {exc}") from exc


def check_agents(specs: Sequence[AgentSpec], state: RegistryState) -> None:
    """Raise :class:`AgentLoadError` listing every way ``specs`` do not fit ``state``."""
    problems: list[str] = []
    for spec in specs:
        for topic in spec.topics:
            try:
                schema = state.reader_schema(topic)
                state.topic_metadata(topic)
            except NotFoundError:
                problems.append(f"agent {spec.name!r} reads topic {topic!r}, which is not "
                                f"registered (no metadata or no schema); {_REGISTER}")
                continue
            if spec.record is not None:
                try:
                    check_record_type(spec.record, schema, topic=topic)
                except RecordTypeError as exc:
                    problems.append(f"agent {spec.name!r}: {exc.message}")
        for topic in spec.outputs:
            if topic not in state.topics:
                how = "sends to" if topic in spec.sends else "emits closed windows to"
                problems.append(f"agent {spec.name!r} {how} topic {topic!r}, which is not "
                                f"registered; {_REGISTER}")
        if spec.stateful and len(spec.topics) != 1:
            problems.append(f"agent {spec.name!r} keeps state (tables "
                            f"{[t.name for t in spec.tables]}) and reads "
                            f"{len(spec.topics)} topics {list(spec.topics)}; an agent with "
                            "state reads exactly one topic (its partition p is the state's "
                            "partition p): split it, or send the topics into one first")
    if problems:
        raise AgentLoadError("; ".join(problems))
