"""Dedup agent: the winning version of every unique key, emitted once to ``<topic>.unique``.

Contract:
- Topics in: every registered topic whose metadata has a non-empty ``key`` (the set
  follows the registry while the worker runs), and its ``<topic>.repartition``. Out:
  ``<topic>.unique`` -- same partition count, same partition, same key bytes, same value
  bytes, original timestamp and headers plus ``onepipe.source: b"<partition>:<offset>"``
  (the version's position in the source topic) -- and ``<topic>.repartition``. The agent
  creates both topics (``.unique`` with ``cleanup.policy=compact``).
- A version is emitted to ``.unique`` only if it outranks (onepipe.schemas.merge) every version of
  its key emitted before it: per key, ``.unique`` is strictly increasing in rank, and
  its last message is the key's winner. Duplicates (equal rank) and losers (lower rank)
  are counted and dropped. Within one consumed batch only a key's best version is
  emitted. Undecodable values (tombstones, no frame, unknown schema, bad body) are
  counted and skipped.
- Records whose key bytes are not canonical are deduplicated under the canonical key;
  records in the wrong partition for that key (a producer that bypassed the endpoint's
  partitioner) are forwarded to ``<topic>.repartition`` at the canonical partition and
  deduplicated by the member owning it.
- Delivery: at-least-once, without regressions. Per batch: winners (and forwarded
  records) are produced and acknowledged, then the table (RocksDB, onepipe.tables.dedup.store)
  is written with the ``.unique`` offset it has applied, then Kafka offsets are
  committed. (The next batch is planned while those acks are pending -- against the
  table plus the winners still in flight -- and batches complete strictly in order, so
  this holds for every batch.) ``.unique`` is the table's changelog: on assignment a
  partition's table is brought to the changelog's high watermark
  (onepipe.tables.dedup.recovery), so a crash after
  the acks and before the commit re-reads the batch and finds its winners already
  there (duplicates, not re-emitted), and a new owner after a rebalance starts from
  everything the old owner emitted. A fresh data dir rebuilds every table from
  ``.unique``. A zombie member (one that lost its session but keeps producing) can still
  emit a version the new owner emits again; ``.unique`` stays at-least-once.
- Rebalance: partition ``p`` of a topic and of its repartition topic go to the same
  member (range assignor, equal partition counts). A revoke waits for the batches in
  flight, so their winners are acknowledged and committed before the partition moves.
- Failures: any error in a batch or a rebalance closes the tables and rejoins the group
  (backing off up to 60 s), so every partition is recovered from ``.unique`` again and
  re-read from its last commit. ``on_winner`` (for checksum tables) sees a winner change
  once it is durable in ``.unique`` and in the table. A crash between the acks and the
  table write hides that change from the hook (the re-read finds a duplicate), so a
  table fed by the hook must recover from ``.unique`` as this one does.
"""

from onepipe.agents.dedup.agent import DedupAgent
from onepipe.agents.dedup.metrics import DedupMetrics, WinnerHook

__all__ = ["DedupAgent", "DedupMetrics", "WinnerHook"]
