"""The checksum agent's names, counters and open tables (onepipe.agents.checksum.agent).

:class:`OpenTables` holds the stores of the partitions assigned to one agent - a
onepipe.tables.checksum.store ``ChecksumStore`` per ``.unique`` partition and a ``RawCountStore``
per source partition - and answers the read-only questions tests ask of them (figures
per day and per hour, raw counts per day, partitions summed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from onepipe.schemas.figures import DayFigures
from onepipe.schemas.partition_day import day_name, hour_name
from onepipe.schemas.topic_names import source_of_unique
from onepipe.tables.checksum import ChecksumStore, RawCount, RawCountStore

__all__ = ["ChecksumMetrics", "OpenTables"]


@dataclass(slots=True)
class ChecksumMetrics:
    """Counters of one checksum agent (exported by the worker's metrics view)."""

    #: ``.unique`` messages folded into tables (redeliveries below the applied offset not).
    folded: int = 0
    #: Winners whose value did not decode or had no day (their key counts nowhere).
    undecodable: int = 0
    #: Source records counted into raw record counts (redeliveries not).
    counted: int = 0
    #: Of them, undecodable.
    raw_undecodable: int = 0
    #: Batches applied.
    batches: int = 0
    #: Day records produced to ``<topic>.checksums`` (tombstones included).
    published: int = 0
    #: (Partition, day) figures dropped by retention (a day counts once per partition).
    expired: int = 0
    #: Restarts after a failure.
    restarts: int = 0
    #: Stores rebuilt from offset 0 because they were ahead of their partition's log.
    rebuilt: int = 0
    #: (Partition, day) figures held by the tables of the partitions assigned here.
    days_tracked: int = 0
    #: Next ``.unique`` offset to fold / source offset to count, per partition here.
    positions: dict[TopicPartition, int] = field(default_factory=dict)


class OpenTables:
    """The stores open in one agent, by partition; closed by :meth:`close`."""

    def __init__(self) -> None:
        #: ``.unique`` partition -> its checksum table.
        self.folds: dict[TopicPartition, ChecksumStore] = {}
        #: Source partition -> its raw record counts.
        self.raws: dict[TopicPartition, RawCountStore] = {}

    def close(self, tps: Iterable[TopicPartition] | None = None) -> None:
        """Close the stores of ``tps`` (every store when None); harmless for others."""
        for tp in list(tps) if tps is not None else [*self.folds, *self.raws]:
            store = self.folds.pop(tp, None)
            if store is not None:
                store.close()
            raw = self.raws.pop(tp, None)
            if raw is not None:
                raw.close()

    @property
    def days_tracked(self) -> int:
        return sum(len(s.days) for s in self.folds.values())

    def day_figures(self, topic: str) -> dict[str, DayFigures]:
        """The tables' figures of ``topic`` per day, partitions summed."""
        return self._summed(topic, lambda store: store.days, day_name)

    def hour_figures(self, topic: str) -> dict[str, DayFigures]:
        """The figures of ``topic`` per hour ``YYYY-MM-DDTHH``, partitions summed."""
        return self._summed(topic, lambda store: store.hours, hour_name)

    def _summed(self, topic: str, windows: Callable[[ChecksumStore], dict[int, DayFigures]],
                name_of: Callable[[int], str]) -> dict[str, DayFigures]:
        out: dict[str, DayFigures] = {}
        for tp, store in self.folds.items():
            if source_of_unique(tp.topic) != topic:
                continue
            for window, figures in windows(store).items():
                name = name_of(window)
                out[name] = out[name] + figures if name in out else figures
        return out

    def raw_counts(self, topic: str) -> dict[str, RawCount]:
        """Raw record counts of ``topic`` per day, partitions summed."""
        out: dict[str, RawCount] = {}
        for tp, store in self.raws.items():
            if tp.topic == topic:
                for day, count in store.days.items():
                    name = day_name(day)
                    out[name] = out.get(name, RawCount()).plus(count)
        return out
