"""What a compaction run takes and gives: the day-task dispatcher it may use, its report.

Apart from the compactor so the worker pool (pool.py) implements the dispatcher without
importing the compactor, and callers read reports without it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from onepipe.agents.compact.plan import DayTask, DayVersion

__all__ = ["CompactionReport", "DayTaskDispatcher", "OnDayWritten"]


#: Called after each day's files are in the lake, before the snapshot commit (tests use
#: it to crash a run at that point).
OnDayWritten = Callable[[DayTask, tuple[str, ...]], Awaitable[None]]


class DayTaskDispatcher(Protocol):
    """Runs the staged day tasks of one planning run somewhere; one result per task.

    Returns the :class:`DayVersion` of each task, in task order, whose files are in the
    lake (named with the task's run id and any attempt id); raises if a task could not be
    executed at all. The compactor's snapshot references exactly the returned files.
    """

    async def run(self, tasks: list[DayTask]) -> list[DayVersion]: ...


@dataclass(frozen=True, slots=True)
class CompactionReport:
    """What one :meth:`Compactor.run` did."""

    #: Kafka topic.
    topic: str
    #: The table sequence number of the snapshot committed, or None when there was
    #: nothing to do.
    seq: int | None
    #: The Iceberg snapshot id committed (None: nothing committed).
    snapshot_id: int | None = None
    #: Days that got a new version, sorted.
    days_written: tuple[str, ...] = ()
    #: Raw records (offsets) merged by this run.
    rows_in: int = 0
    #: Rows in the day versions written.
    rows_out: int = 0
    #: Merged records whose value did not decode (left out of clean).
    undecodable: int = 0
    #: Merged records that decoded but lack a key field or partition time (left out).
    incomplete: int = 0
    #: Raw files merged.
    raw_files: int = 0
    #: Data files of expired snapshots, orphaned data files and stale staged inputs deleted.
    files_deleted: int = 0
    #: Attempts (1 + commits lost to another compactor).
    attempts: int = 1
    #: Wall-clock seconds.
    duration_seconds: float = 0.0
    #: Seconds the snapshot commit took (reading the new files' footers included).
    commit_seconds: float = 0.0
