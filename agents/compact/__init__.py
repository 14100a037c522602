"""Compaction: the raw lake into the clean lake - one Apache Iceberg table per topic.

Contract:

- **In**: the raw files of a topic, ``raw/<topic>/...`` (onepipe.sinks.lake.raw_layout).
  **Out**: the Iceberg table ``("onepipe", "<topic>")`` in the catalog
  ``CompactionConfig.catalog_uri`` (onepipe.sinks.lake.iceberg), located at
  ``<lake>/clean/<topic>``: per day (partition ``day(_kafka_clean_day)``), one row per
  unique key - the key's global winner under the topic's merge rule (onepipe.schemas.merge,
  the rule the dedup agent and the sinks apply), placed in the day of its
  ``partition_time``, sorted by the key (the table's sort order). Schema evolution follows
  the registry: a new optional field becomes a new column, field ids kept.
- **One run, one snapshot** (compactor.py): a run replaces the changed days in one
  ``overwrite`` snapshot whose summary records the raw watermark it consumed
  (``onepipe.raw-watermark``); a reader sees a whole snapshot or the previous one. A crash
  before the commit leaves only unreferenced files that a later run deletes, and the rerun
  plans from the same watermark; two compactors racing end with one commit and a retry
  from the new snapshot (``CompactionConflict``), never a lost day. Snapshots replaced
  more than ``retention_seconds`` ago are expired (time travel reaches back that far).
- **Work over the pool** (pool.py, worker.py, messages.py): a run's day tasks may be sent
  over ``<app_id>-compact-tasks`` to every worker's day-task consumer (group
  ``<app_id>-compact``), results coming back on ``<app_id>-compact-results``. Tasks are
  at-least-once; a task nobody answers within the timeout is run by the compactor itself,
  so a run never depends on the pool. A worker killed mid-task costs a re-execution.
  Pool workers only write data files (with the table's field ids, carried by the task);
  the planning compactor alone commits.
- **Scheduling** (schedule.py): every ``ONEPIPE_COMPACT_INTERVAL_SECONDS``, exactly one
  worker per slot compacts each topic (a claim in the lake, no clock agreement needed).
- **Migration** (migrate.py): ``onepipe lake migrate`` converts a manifest-format clean
  lake (the first layout) into the table, proving every day's row checksum equal.
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
