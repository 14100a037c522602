"""Developers' agents: functions over registered topics, declared in their own packages.

A developer declares ``@onepipe.agent(...)`` (per record: ``async for v in stream``) or
``@onepipe.batch_agent(...)`` (one call per partition batch) in a module; a worker runs
the agents of the modules in ``ONEPIPE_AGENTS`` (comma-separated) and of the entry-point
group ``onepipe.agents`` (onepipe.agents.framework.load), one runner each
(onepipe.agents.framework.runner).

Contract:

- **Topics in**: the agent's topics, registered (checked at worker start, with the
  ``record=`` types against the reader schemas); every schema version arrives resolved
  to the topic's reader schema (its latest), as a dict or the ``record=`` type. Records
  that do not decode (tombstones, unknown schema, bad body) are counted (``undecodable``)
  and logged with ``topic[partition]@offset``, never handed to the code. A batch holds
  records of ONE partition in offset order; a per-record agent sees its partitions'
  batches one after another.
- **Topics out**: only the declared ``sends`` and the window tables' ``to`` topics
  (registered, checked at start). A send is validated and encoded at once as the produce
  endpoint does (a bad record raises ``RecordValidationError`` into the code) and is
  produced when its batch commits, keyed by the topic's unique key.
- **Delivery**: state is exactly-once for updates that are functions of the records and
  the state: per partition batch the outputs are acknowledged, then the state changes
  and a position marker in the changelog ``<app_id>-<name>-changelog``, then RocksDB
  (one WriteBatch), then the group offset. Outputs are at-least-once: a batch whose
  commit did not finish is processed again and sends again (the output's unique key makes
  repeats identical, so ``<topic>.unique`` removes them). An agent without state keeps
  its position in its group ``<app_id>-agent-<name>`` (at-least-once).
- **Rebalances** move partitions between batches only; a newly assigned partition's
  state is recovered from the changelog to its fetch high watermark first (a fresh data
  dir rebuilds it), and reading resumes at the offset after the last committed batch (a
  new agent reads its topic from the beginning).
- **Crashes and failures**: an exception in the agent's code (or a failed commit) drops
  the batch's pending state and sends, logs the agent name and record coordinates and
  restarts the agent from durable state (backing off up to a minute); a per-record
  agent's coroutine is started anew, so its local variables are not state.
- **Late records**: partition time is the topic's ``partition_time`` field (or the Kafka
  timestamp); a record whose windows have all closed (stream time reached window end +
  grace) is dropped from the window table and counted (``late``), and given to the code
  as usual. Windows close after each batch; a closed window's ``emit`` is sent to ``to``.
"""

from onepipe.agents.framework.declare import AgentSpec, agent, batch_agent, declared
from onepipe.agents.framework.load import (
    ENTRY_POINT_GROUP,
    AgentLoadError,
    check_agents,
    load_agents,
)
from onepipe.agents.framework.metrics import AGENT_COUNTERS, AgentMetrics
from onepipe.agents.framework.processor import AgentProcessor, Outcome
from onepipe.agents.framework.runner import AgentRunner
from onepipe.agents.framework.stream import Batch, Record, Stream

__all__ = ["AGENT_COUNTERS", "ENTRY_POINT_GROUP", "AgentLoadError", "AgentMetrics",
           "AgentProcessor", "AgentRunner", "AgentSpec", "Batch", "Outcome", "Record",
           "Stream", "agent", "batch_agent", "check_agents", "declared", "load_agents"]
