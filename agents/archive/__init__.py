"""Archive agent: every archived topic into the raw Parquet lake, exactly once.

Contract:
- Topics in: every registered topic whose metadata has ``archive.enabled`` (the default);
  the set follows the registry while the worker runs. Out: raw lake files
  ``raw/<topic>/partition=<p>/date=<D>/hour=<H>/<first>-<last>.parquet``
  (onepipe.sinks.lake.raw_layout).
- Exactly once in ``raw/``, crashes and rebalances included: a file holds one contiguous
  offset range and is made visible whole (onepipe.sinks.lake.store), and on partition assignment
  the agent resumes after the highest offset the *lake* holds, not after Kafka's committed
  offset. A crash between writing a file and committing the offset therefore re-reads
  nothing that is archived. Kafka offsets are committed after each file (for lag
  monitoring); they are never the source of truth.
- Flushes per partition when a buffer reaches the topic's ``flush_records`` or
  ``flush_bytes``, when it is ``flush_seconds`` old, when the partition is revoked, and at
  shutdown. All buffers together stay under ``max_buffer_bytes``: past it the largest
  buffers are flushed before anything more is fetched (back-pressure, not growth).
- A value that does not decode is archived anyway (key/value bytes kept, typed columns
  null, ``_kafka_decode_error`` set) and counted in :attr:`ArchiveMetrics.undecodable`.
- Records of every schema version are read with the topic's latest schema, so one file
  has one schema.

- Rebalance: a revoked partition's buffer is flushed and made durable before the
  partition moves; an assigned one is paused until its position is read from the lake.
- Crash: nothing archived is lost or repeated - the next owner lists the lake and goes on
  after its last file; a writer's temporary file left by the crash is removed first.
"""

from onepipe.agents.archive.agent import ArchiveAgent
from onepipe.agents.archive.metrics import FLUSH_LATENCY_BUCKETS, ArchiveMetrics, PartitionFlush

__all__ = ["FLUSH_LATENCY_BUCKETS", "ArchiveAgent", "ArchiveMetrics", "PartitionFlush"]
