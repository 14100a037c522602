"""Declaring agents: the ``agent`` and ``batch_agent`` decorators and what they record.

A decorator checks what it can without a broker (the function's shape, the bounds, the
name) and records an :class:`AgentSpec` in the process-wide registry, keyed by the
agent's name; onepipe.agents.framework.load then picks the specs of the modules a worker
was told to load. Nothing runs at declaration: the worker's runner (or the test kit)
does, after the start checks passed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from onepipe.schemas.errors import ConfigError
from onepipe.schemas.topic_names import kafka_safe
from onepipe.tables.state import Table, WindowTable

__all__ = ["AgentFn", "AgentSpec", "agent", "batch_agent", "declared", "slug"]

#: The user function: ``async def fn(stream_or_batch) -> None``.
AgentFn = Callable[[Any], Coroutine[Any, Any, None]]
Kind = Literal["record", "batch"]

#: Leaves room for ``<app_id>-`` and ``-changelog`` within Kafka's 249 characters.
_MAX_NAME = 180


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One declared agent: what it reads, sends and keeps; frozen once declared."""

    #: Unique name (default ``module.qualname``); names its group, changelog and state.
    name: str
    #: ``record`` (``async for value in stream``) or ``batch`` (one call per batch).
    kind: Kind
    #: The user function.
    fn: AgentFn
    #: Topics read (registered topics).
    topics: tuple[str, ...]
    #: Dataclass the values are converted to; None: dicts shaped by the reader schema.
    record: type | None
    #: Topics the agent may ``send`` to.
    sends: tuple[str, ...]
    #: State tables (onepipe.tables.state); an agent with tables reads one topic.
    tables: tuple[Table | WindowTable, ...]
    #: Most records of one batch.
    max_records: int
    #: Longest a batch is gathered before it is handed over.
    max_wait: timedelta
    #: Module that declared it (``onepipe agents`` shows it; the loader filters by it).
    module: str

    @property
    def slug(self) -> str:
        """The name as Kafka topics and folders take it (see :func:`slug`)."""
        return slug(self.name)

    def state_folder(self, data_dir: Path, topic: str | None = None,
                     partition: int | None = None) -> Path:
        """Where its state lives: ``<data_dir>/state/<slug>``, and the store of one input
        partition in it, ``<topic>-<partition>``."""
        folder = data_dir / "state" / self.slug
        return folder if topic is None else folder / f"{topic}-{partition}"

    @property
    def stateful(self) -> bool:
        return bool(self.tables)

    @property
    def windows(self) -> tuple[WindowTable, ...]:
        return tuple(t for t in self.tables if isinstance(t, WindowTable))

    @property
    def outputs(self) -> tuple[str, ...]:
        """Every topic it produces to: its sends, then its window tables' targets."""
        targets = [w.to for w in self.windows if w.to is not None]
        return tuple(dict.fromkeys([*self.sends, *targets]))

    @property
    def function(self) -> str:
        """``module.qualname`` of the user function, for messages."""
        return f"{self.fn.__module__}.{self.fn.__qualname__}"


def slug(name: str) -> str:
    """``name`` with every character Kafka refuses in a topic name replaced by ``_``."""
    return kafka_safe(name)


#: Every agent declared in this process, by slug (names that differ only in unsafe
#: characters would share a group and a changelog: they count as the same name).
_DECLARED: dict[str, AgentSpec] = {}


def declared() -> list[AgentSpec]:
    """Every agent declared so far in this process, in declaration order."""
    return list(_DECLARED.values())


def agent(*topics: str, name: str | None = None, record: type | None = None,
          sends: Iterable[str] = (), tables: Iterable[Table | WindowTable] = (),
          max_records: int = 1000, max_wait: timedelta = timedelta(seconds=1)
          ) -> Callable[[AgentFn], AgentFn]:
    """Declare a per-record agent: ``async def fn(stream: Stream[T]) -> None``.

    One long-lived coroutine per agent and worker iterates ``async for value in stream``
    over the records of ``topics`` (every assigned partition, batch by batch); see
    onepipe.agents.framework for what it may rely on.
    """
    return _declarer("record", topics, name, record, sends, tables, max_records, max_wait)


def batch_agent(*topics: str, name: str | None = None, record: type | None = None,
                sends: Iterable[str] = (), tables: Iterable[Table | WindowTable] = (),
                max_records: int = 10_000, max_wait: timedelta = timedelta(seconds=1)
                ) -> Callable[[AgentFn], AgentFn]:
    """Declare a batch agent: ``async def fn(batch: Batch[T]) -> None``, called once per
    batch of ONE topic-partition (its records in offset order)."""
    return _declarer("batch", topics, name, record, sends, tables, max_records, max_wait)


def _declarer(kind: Kind, topics: tuple[str, ...], name: str | None, record: type | None,
              sends: Iterable[str], tables: Iterable[Table | WindowTable], max_records: int,
              max_wait: timedelta) -> Callable[[AgentFn], AgentFn]:
    decorator = "agent" if kind == "record" else "batch_agent"
    if not topics or not all(isinstance(t, str) and t for t in topics):
        raise ConfigError(f"@onepipe.{decorator}(...) needs the topic names it reads as "
                          f"positional strings; got {topics!r}")
    if max_records < 1 or max_wait <= timedelta(0):
        raise ConfigError(f"@onepipe.{decorator}: max_records must be >= 1 and max_wait "
                          f"positive; got {max_records!r} and {max_wait!r}")
    send_topics = (sends,) if isinstance(sends, str) else tuple(sends)
    declared_tables = tuple(tables)
    for table in declared_tables:
        if not isinstance(table, Table | WindowTable):
            raise ConfigError(f"@onepipe.{decorator}: tables=[...] takes onepipe.Table and "
                              f"onepipe.WindowTable objects; got {table!r}")

    def decorate(fn: AgentFn) -> AgentFn:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigError(f"@onepipe.{decorator} decorates an `async def` function; "
                              f"{fn!r} is not one")
        spec = AgentSpec(name=name or f"{fn.__module__}.{fn.__qualname__}", kind=kind, fn=fn,
                         topics=tuple(dict.fromkeys(topics)), record=record,
                         sends=tuple(dict.fromkeys(send_topics)), tables=declared_tables,
                         max_records=max_records, max_wait=max_wait, module=fn.__module__)
        _register(spec)
        return fn

    return decorate


def _register(spec: AgentSpec) -> None:
    if len(spec.slug) > _MAX_NAME:
        raise ConfigError(f"agent name {spec.name!r} is {len(spec.slug)} characters long; "
                          f"at most {_MAX_NAME} fit in its group and changelog topic names "
                          "(pass a shorter name=...)")
    names = [t.name for t in spec.tables]
    if len(set(names)) != len(names):
        raise ConfigError(f"agent {spec.name!r} declares two tables of one name: {names}")
    known = _DECLARED.get(spec.slug)
    if known is not None and known.function != spec.function:
        raise ConfigError(f"two agents are named {spec.name!r}: {known.function} and "
                          f"{spec.function}; give one of them another name=...")
    # The same function declared again is its module imported again (a reload): the
    # newer declaration replaces the older.
    _DECLARED[spec.slug] = spec
