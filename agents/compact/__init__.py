"""Compaction: the raw lake into the clean lake - sorted, one row per key, versioned days.

Contract:

- **In**: the raw files of a topic, ``raw/<topic>/...`` (onepipe.sinks.lake.raw_layout).
  **Out**: ``clean/<topic>/date=<D>/v<N>/`` files and manifest ``N``
  (onepipe.sinks.lake.clean_manifest): per day, one row per unique key - the key's global
  winner under the topic's merge rule (onepipe.schemas.merge, the rule the dedup agent and
  the sinks apply), placed in the day of its ``partition_time``, sorted by the key.
- **Atomic, crash-safe runs** (compactor.py): a run publishes by one ``put_if_absent``
  manifest commit, so a reader sees a whole version of every day or the previous one; a
  crash before the commit leaves only unreferenced files that a later run deletes; two
  compactors racing end with one winner per ``seq`` and a retry, never a lost day.
- **Work over the pool** (pool.py, worker.py, messages.py): a run's day tasks may be sent
  over ``<app_id>-compact-tasks`` to every worker's day-task consumer (group
  ``<app_id>-compact``), results coming back on ``<app_id>-compact-results``. Tasks are
  at-least-once; a task nobody answers within the timeout is run by the compactor itself,
  so a run never depends on the pool. A worker killed mid-task costs a re-execution.
- **Scheduling** (schedule.py): every ``ONEPIPE_COMPACT_INTERVAL_SECONDS``, exactly one
  worker per slot compacts each topic (a claim in the lake, no clock agreement needed).
- **Memory**: DuckDB merges within ``memory_limit`` and spills to ``work_dir``
  (config.py); no day is ever held in Python objects.
"""

from onepipe.agents.compact.compactor import Compactor
from onepipe.agents.compact.config import CompactionConfig
from onepipe.agents.compact.day import DayExecutor
from onepipe.agents.compact.pool import DayTaskWorker, KafkaDayDispatcher, TaskOutcome
from onepipe.agents.compact.run import CompactionReport, DayTaskDispatcher
from onepipe.agents.compact.schedule import CompactionScheduler

__all__ = ["CompactionConfig", "CompactionReport", "CompactionScheduler", "Compactor",
           "DayExecutor", "DayTaskDispatcher", "DayTaskWorker", "KafkaDayDispatcher",
           "TaskOutcome"]
