"""The batch-agent skeleton the hot-path agents share (archive, dedup, checksum).

Contract of every :class:`BatchAgent` (details in agent.py):

- **One consumer group per agent kind** (``<app_id>-archive``, ``-dedup``, ``-checksums``;
  onepipe.schemas.topic_names), hosted by the worker; more workers share the partitions.
- **Topics follow the registry**: whenever the registry changes, the agent's
  ``_wanted`` names the topics to read and the consumer subscribes to exactly those.
- **Batches**: records are fetched with ``getmany`` (up to ``max_records``) and handed to
  the agent's ``_process``, under the lock partition moves also take: a partition is
  never revoked in the middle of a batch (the archive instead makes a revoked
  partition's buffer durable in its revoke, without waiting for other partitions).
- **Rebalance**: assigned partitions are paused until the agent has positioned them from
  its own source of truth (the lake, a state store, a changelog); a revoke lets the agent
  make the partitions' work durable first. Kafka's committed offsets are for lag
  monitoring only.
- **Crash and failure**: anything that fails (a batch, a rebalance callback) drops what
  the agent holds and rejoins the group, backing off up to a minute, so every partition
  restarts from the source of truth; nothing is skipped and nothing is applied twice
  beyond what that truth records. ``stop()`` drains, leaves the group, closes; twice is
  harmless.
"""

from onepipe.agents.batch.agent import BatchAgent, Batches
from onepipe.agents.batch.supervise import Rebalance, end_loop, supervise

__all__ = ["BatchAgent", "Batches", "Rebalance", "end_loop", "supervise"]
