"""Checksum agent: per-day figures of every keyed topic's current winners, as the stream flows.

Contract:

- Topics in: ``<topic>.unique`` of every registered keyed topic and ``<topic>`` itself
  (the source; same consumer and group, routed by topic name). The set follows the
  registry; a topic is subscribed to only once it exists - listed first, since a metadata
  request naming a missing topic would create it. Out: the compacted topic
  ``<topic>.checksums`` (one partition, created by the agent): per source partition the
  figures of every day (``<p>/<day>``) and hour (``<p>/<day>T<HH>``) and the raw record
  count of every day (``<p>/<day>/raw``), tombstoned when dropped
  (format: onepipe.tables.checksum.published). onepipe.agents.verify.checksums reads
  it.
- Windows: a winner's figures count in the day and the hour of its partition time
  (onepipe.schemas.partition_day ``partition_days`` / ``partition_hours``, the same rounding and
  clamping): a day's figures are the sum of its hours'.
- State: one onepipe.tables.checksum.store per ``.unique`` partition under
  ``<data_dir>/checksums/<topic>/<partition>``. Every ``.unique`` message is a new winner
  of its key (onepipe.agents.dedup.agent), so the table is a fold of ``.unique``; each
  batch's changes and the next offset to fold are one RocksDB WriteBatch.
- Raw record counts: every record of the source topic (duplicates, retries, losers)
  counted in its day as the raw lake places it (onepipe.agents.checksum.raw: ``partition_time``,
  else the Kafka timestamp; undecodable ones also counted apart), one
  ``RawCountStore`` per source partition under ``<data_dir>/checksums/<topic>/raw/<p>``;
  counts and the next source offset are one WriteBatch, exactly-once like the fold.
- Delivery: **exactly-once fold and count**. On assignment a partition is sought to its
  store's applied offset (Kafka's committed offset is ignored; it is committed anyway,
  for lag monitoring), and records below it are skipped, so a crash anywhere folds or
  counts nothing twice and loses nothing. A fresh data dir rebuilds from offset 0 (on
  Kafka, the compacted ``.unique`` log still holds every key's winner; raw counts need
  the source topic's retention to reach back, else they start where it does).
- A store ahead of its log is rebuilt. On assignment each store's applied offset is
  compared with its partition's end (the fetch high watermark,
  onepipe.tables.kafka.high_watermarks). One beyond the end belongs to another log (the
  topic was deleted and recreated, or an in-memory broker lost its log): seeking there
  would skip the new log's records as redelivered, and the figures would never change
  again. The store is closed, deleted and opened empty, so the partition is folded (or
  counted) again from offset 0 - the dedup table's policy: the fold is a function of
  ``.unique``, so a rebuild from the current log is right. A WARNING names the partition
  and both offsets; the windows the old store had published are tombstoned
  (:attr:`ChecksumMetrics.rebuilt` counts rebuilds).
- Publication is at-least-once and eventually exact: the touched days of a batch are
  produced after the table is written, and on assignment every day of the partition is
  produced again (so a crash between the write and the produce heals on restart).
- Retention: days more than ``retention_days`` before today (UTC, injectable clock) are
  dropped (figures, their hours, raw counts) and tombstoned.
- Figures are those of onepipe.schemas.figures over the winners decoded with the topic's
  **latest** schema (onepipe.sinks.formats.raw's type mapping, like
  onepipe.agents.verify.stream) and placed in days by onepipe.schemas.partition_day. Known
  gap: a new schema version changes the spec, and contributions folded under the old one
  are not recomputed (delete the data dir to rebuild).
- Rebalance: a revoked partition's store is closed after the batch in flight; an
  assigned one is opened, sought to its applied offset and republished.
"""

from onepipe.agents.checksum.agent import ChecksumAgent
from onepipe.agents.checksum.open_tables import ChecksumMetrics

__all__ = ["ChecksumAgent", "ChecksumMetrics"]
