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
  buffers are flushed before anything more is fetched (back-pressure, not growth). Beyond
  it: the files being encoded (at most four) and up to 64 MiB of shared-memory files kept
  for the hand-over to the encoders (onepipe.agents.archive.writer, "Memory").
- A value that does not decode is archived anyway (key/value bytes kept, typed columns
  null, ``_kafka_decode_error`` set) and counted in :attr:`ArchiveMetrics.undecodable`.
- Records of every schema version are read with the topic's latest schema, so one file
  has one schema.

- Rebalance: a revoked partition's buffer is flushed and made durable before the
  partition moves; an assigned one is paused until its position is read from the lake.
- Crash: nothing archived is lost or repeated - the next owner lists the lake and goes on
  after its last file; a writer's temporary file left by the crash is removed first.
- A reset log stalls its partition, loudly. On assignment each partition's lake position is
  compared with its end (the fetch high watermark, onepipe.tables.kafka.high_watermarks).
  A lake holding more than the log (the broker lost its log - an in-memory broker
  restarted - or the topic was deleted and recreated) means the log is not the one the
  lake continues: the partition is not consumed (kept paused), an ERROR says what the lake
  holds, where the log ends and what to do (restore the topic from the lake with
  ``onepipe replay <topic> --into-source`` while it is empty, or move the partition's old
  files aside), and ``/status``, ``/status.json``, ``/health``, ``/metrics``
  (``onepipe_archive_stalled_partitions``, ``onepipe_archive_partition_stalled``) and
  ``onepipe status`` show it (:attr:`ArchiveMetrics.stalled`). It is not looked at again
  while the partition stays here: a recreated topic that grows past the old position would
  otherwise be archived as if it continued the old log. A worker restart or the partition
  moving looks again. Known limit: a new log that already outgrew the lake's position
  before the assignment is not told apart from the old one.
"""

from onepipe.agents.archive.agent import ArchiveAgent
from onepipe.agents.archive.metrics import (
    FLUSH_LATENCY_BUCKETS,
    ArchiveMetrics,
    PartitionFlush,
    combined_metrics,
    counted,
    shown_metrics,
)

__all__ = ["FLUSH_LATENCY_BUCKETS", "ArchiveAgent", "ArchiveMetrics", "PartitionFlush",
           "combined_metrics", "counted", "shown_metrics"]
