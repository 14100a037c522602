"""The dedup tables of the partitions assigned to this member: opened, recovered, closed.

Contract: a table lives under ``<root>/<topic>/<partition>`` (onepipe.tables.dedup.store) and
is only handed out after :meth:`PartitionTables.open` has brought it to its changelog's
high watermark (onepipe.tables.dedup.recovery). A local table that claims more of ``.unique``
than the topic holds (the topic was recreated, an in-memory broker restarted) is
deleted and rebuilt from the whole changelog. Closing flushes; closing a table that is
not open is harmless.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from onepipe.schemas.topic_names import unique_topic
from onepipe.tables.dedup.decode import TopicReader
from onepipe.tables.dedup.recovery import StaleStoreError, recover
from onepipe.tables.dedup.store import DedupStore

log = logging.getLogger(__name__)

__all__ = ["PartitionTables"]


class PartitionTables:
    """Open tables by (source topic, partition)."""

    def __init__(self, root: Path) -> None:
        #: Tables live under ``<root>/<topic>/<partition>``.
        self.root = root
        self._stores: dict[tuple[str, int], DedupStore] = {}

    def get(self, table: tuple[str, int]) -> DedupStore | None:
        return self._stores.get(table)

    def __contains__(self, table: tuple[str, int]) -> bool:
        return table in self._stores

    async def open(self, recovery: AIOKafkaConsumer, topic: str, partition: int,
                   reader: TopicReader) -> int:
        """Open and recover one table; the number of changelog messages folded.

        ``recovery`` is a group-less consumer with ``auto_offset_reset="none"``.
        """
        path = self.root / topic / str(partition)
        tp = TopicPartition(unique_topic(topic), partition)
        store = DedupStore(path)
        try:
            try:
                folded = await recover(recovery, tp, store, reader)
            except StaleStoreError:
                log.warning("dedup %s[%d]: local table is ahead of %s@%d; rebuilding it",
                            topic, partition, tp.topic, store.applied_offset,
                            extra={"topic": tp.topic, "partition": partition,
                                   "offset": store.applied_offset})
                store.close()
                shutil.rmtree(path)
                store = DedupStore(path)
                folded = await recover(recovery, tp, store, reader)
        except BaseException:
            store.close()
            raise
        self._stores[(topic, partition)] = store
        return folded

    def close(self, tables: Iterable[tuple[str, int]]) -> None:
        for table in tables:
            store = self._stores.pop(table, None)
            if store is not None:
                store.close()

    def close_all(self) -> None:
        self.close(list(self._stores))

    def disk_bytes(self) -> int:
        """Bytes of every table under the root (open or not)."""
        if not self.root.exists():
            return 0
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
