"""The test kit: one declared agent run in-process, with no broker (public as
``onepipe.testing``).

What Kafka Streams' TopologyTestDriver and Faust's ``test_context()`` give their users:
feed records, move partition time, read what the agent sent and what its tables hold.
The same core as a worker runs (onepipe.agents.framework.processor) runs the agent's
code; what is real here is what the worker's result depends on:

- **The schemas and metadata** come from a catalog folder (the files ``onepipe apply``
  reads) or from ``topics=`` given inline, into an in-memory registry; the agent's
  ``record=`` type is checked against the reader schema as a worker checks it at start.
- **Records** are validated, keyed and encoded as the produce endpoint does, and put in
  the partition the endpoint would choose (the unique key's), unless told otherwise;
  they reach the agent as bytes and are decoded as in a worker (every schema version is
  read with the topic's latest).
- **State** lives in real RocksDB stores (a temporary folder unless ``data_dir`` is
  given), committed after every fed batch as the worker commits them; there is no
  changelog, so nothing about recovery is tested here (the worker's tests do that).
- **Sends** are validated and encoded like the worker's, then decoded back to dicts for
  :meth:`AgentTest.sent`; a send to an undeclared topic raises into the agent as it
  would in a worker.

Each :meth:`AgentTest.feed` call is one batch per partition (a batch agent is called
once per partition fed; a per-record agent is fed the records one by one), then windows
that stream time closed are closed, as after each batch in a worker.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from onepipe.agents.framework.declare import AgentFn, AgentSpec, declared
from onepipe.agents.framework.load import check_agents
from onepipe.agents.framework.metrics import AgentMetrics
from onepipe.agents.framework.processor import AgentProcessor, Outcome
from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.catalog_folder import load_catalog
from onepipe.schemas.codec import decode
from onepipe.schemas.errors import ConfigError
from onepipe.schemas.metadata import metadata_from_dict, metadata_to_dict
from onepipe.schemas.metadata_checks import validate_against_schema
from onepipe.schemas.partitioner import partitions_for
from onepipe.schemas.registry_state import RegistryState
from onepipe.schemas.topic_names import value_subject
from onepipe.schemas.typed import to_record
from onepipe.sinks.publish.publisher import Publisher
from onepipe.tables.state import CURRENT, PartitionState, StateStore, Table, WindowTable, activate
from onepipe.tables.state.windows import to_ms

__all__ = ["AgentTest"]


@dataclass(frozen=True, slots=True)
class _Fed:
    """A record as the broker would hand it to the agent (the processor's RawRecord)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


class AgentTest:
    """Run ``agent`` (the decorated function, or its spec) in-process; see the module.

    ``catalog`` is a catalog folder (``*.yaml`` with their ``.avsc``); ``topics`` maps more
    topic names to ``(schema, entry)`` - the Avro schema (JSON data; a list registers
    several versions, oldest first) and the catalog entry's mapping (``key``, ``order``,
    ``partition_time``, ``partitions``, ...). Use it as an async context manager.
    """

    def __init__(self, agent: AgentFn | AgentSpec, *, catalog: Path | str | None = None,
                 topics: Mapping[str, tuple[Any, Mapping[str, Any]]] | None = None,
                 data_dir: Path | None = None) -> None:
        self.spec = agent if isinstance(agent, AgentSpec) else _spec_of(agent)
        self.registry = RegistryState()
        self._ids = itertools.count(1)
        self._log = itertools.count()
        entries: list[tuple[str, Any, Mapping[str, Any]]] = []
        if catalog is not None:
            entries += [(e.topic, e.schema, e.entry) for e in load_catalog(Path(catalog))]
        entries += [(topic, schema, entry) for topic, (schema, entry) in (topics or {}).items()]
        for topic, schema, entry in entries:
            self._register(topic, schema, entry)
        check_agents([self.spec], self.registry)  # what a worker checks at start
        self._temp = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="onepipe-agent-test-")) if data_dir is None \
            else data_dir
        self.metrics = AgentMetrics()
        self._publisher = Publisher(self.registry, None, 30.0)
        self.processor = AgentProcessor(self.spec, self.registry, self._publisher.writer,
                                        self.metrics)
        self.states: dict[tuple[str, int], PartitionState] = {}
        self._next_offset: dict[tuple[str, int], int] = {}
        self._sent: dict[str, list[dict[str, Any]]] = {}
        self._closed = False

    # ------------------------------------------------------------ set-up
    def _register(self, topic: str, schema: Any, entry: Mapping[str, Any]) -> None:
        versions = schema if isinstance(schema, list) else [schema]
        meta = metadata_from_dict(topic, entry)
        for number, version in enumerate(versions, 1):
            parsed = parse_schema(version)
            if number == len(versions):
                validate_against_schema(meta, parsed)
            known = self.registry.id_by_identity.get(parsed.identity)
            self.registry.apply(next(self._log), {
                "type": "schema", "subject": value_subject(topic), "version": number,
                "id": known if known is not None else next(self._ids),
                "schema": parsed.text})
        self.registry.apply(next(self._log), {"type": "metadata", "topic": topic,
                                              "metadata": metadata_to_dict(meta)})
        if topic not in self.registry.topics:
            raise ConfigError(f"the test kit could not register topic {topic!r}: its entry "
                              f"{dict(entry)!r} does not parse as catalog metadata")

    def _state(self, topic: str, partition: int) -> PartitionState | None:
        if not self.spec.stateful:
            return None
        found = self.states.get((topic, partition))
        if found is None:
            store = StateStore(self.spec.state_folder(self.data_dir, topic, partition))
            found = self.states[(topic, partition)] = PartitionState(
                store, self.spec.tables, agent=self.spec.name)
        return found

    # ------------------------------------------------------------ driving
    async def feed(self, topic: str, values: Any | Iterable[Any], *,
                   partition: int | None = None, timestamp_ms: int | None = None,
                   version: int | str = "latest") -> None:
        """Produce ``values`` (dicts or typed records; one or a list) to ``topic`` and run
        the agent over them: one batch per partition, in the order given.

        ``partition`` None places each record as the produce endpoint would (by its unique
        key); ``timestamp_ms`` is the Kafka timestamp (default: 0 - give one when the
        topic's partition time is ``kafka``); ``version`` the schema version written with.
        """
        self._check_open()
        if topic not in self.spec.topics:
            raise ConfigError(f"agent {self.spec.name!r} reads {list(self.spec.topics)}, not "
                              f"{topic!r}")
        batch = list(values) if isinstance(values, list | tuple) else [values]
        records = [to_record(v) for v in batch]
        encoded = self._publisher.writer(topic, version).encode(records)
        count = self.registry.topics[topic].partitions
        if partition is not None:
            if not 0 <= partition < count:
                raise ConfigError(f"topic {topic!r} has partitions 0..{count - 1}; got "
                                  f"partition={partition}")
            places = [partition] * len(encoded)
        else:
            places = partitions_for([k if k is not None else b"" for k, _ in encoded], count)
        by_partition: dict[int, list[_Fed]] = {}
        for (key, value), p in zip(encoded, places, strict=True):
            offset = self._next_offset.get((topic, p), 0)
            self._next_offset[(topic, p)] = offset + 1
            by_partition.setdefault(p, []).append(
                _Fed(topic, p, offset, timestamp_ms or 0, key, value))
        for p, fed in by_partition.items():
            state = self._state(topic, p)
            self._commit(await self.processor.process(topic, p, fed, state), state)

    async def advance(self, to: datetime | int, *, topic: str | None = None,
                      partition: int | None = None) -> None:
        """Move stream time to at least ``to`` (a datetime, or epoch ms) in every partition
        that holds state (or the one given), and close the windows that passes: what the
        next records would do in a worker. Sends emitted windows like a batch."""
        self._check_open()
        time_ms = to_ms(to) if isinstance(to, datetime) else int(to)
        for (t, p), state in list(self.states.items()):
            if (topic is not None and t != topic) or (partition is not None and p != partition):
                continue
            state.advance(time_ms)
            self.processor.outbox.take()
            for target, emitted in state.close_windows():
                self.processor.outbox.add(target, emitted)
            self._commit(Outcome(state.position.next_offset, self.processor.outbox.take(),
                                 state.changes()), state)

    def _commit(self, outcome: Outcome, state: PartitionState | None) -> None:
        for target, encoded in outcome.sends.items():
            sent = self._sent.setdefault(target, [])
            for _, value in encoded:
                sent.append(decode(value, self.registry.schema_by_id,
                                   self.registry.reader_schema(target))[1])
        if state is not None:
            state.commit(outcome.next_offset, None)

    # ------------------------------------------------------------ reading
    def sent(self, topic: str) -> list[dict[str, Any]]:
        """Every record the agent sent to ``topic`` so far, decoded, in order."""
        return list(self._sent.get(topic, []))

    def table(self, table: Table | WindowTable, *, topic: str | None = None,
              partition: int | None = None) -> dict[Any, Any]:
        """What ``table`` holds now: ``{key: value}`` (a window table's keys are
        ``(key, Window)``), over every partition or the one given."""
        if table not in self.spec.tables:
            raise ConfigError(f"agent {self.spec.name!r} did not declare table "
                              f"{table.name!r}")
        merged: dict[Any, Any] = {}
        for (t, p), state in self.states.items():
            if (topic is not None and t != topic) or (partition is not None and p != partition):
                continue
            token = activate(state)
            try:
                merged.update(table.items())
            finally:
                CURRENT.reset(token)
        return merged

    @property
    def late(self) -> int:
        """Records window tables dropped as late, so far."""
        return self.metrics.late

    @property
    def undecodable(self) -> int:
        """Records that did not decode (never handed to the agent), so far."""
        return self.metrics.undecodable

    # ------------------------------------------------------------ lifecycle
    def _check_open(self) -> None:
        if self._closed:
            raise ConfigError("this AgentTest is closed; make a new one")

    async def close(self) -> None:
        """End the agent's coroutine, close the stores (and remove a temporary folder)."""
        if self._closed:
            return
        self._closed = True
        await self.processor.close()
        for state in self.states.values():
            state.close()
        self.states.clear()
        if self._temp:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    async def __aenter__(self) -> AgentTest:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _spec_of(fn: AgentFn) -> AgentSpec:
    for spec in declared():
        if spec.fn is fn:
            return spec
    raise ConfigError(f"{fn!r} is not a declared agent: decorate it with @onepipe.agent(...) "
                      "or @onepipe.batch_agent(...)")
