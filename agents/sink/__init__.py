"""Online sinks: every topic's winners in the row stores applications query.

Contract:

- **Declared, not coded.** A topic's catalog entry lists its sinks (``name``, ``kind``:
  sqlite | postgres | mysql, ``dsn_env``, ``table``). The worker runs one sink agent per
  declared sink (runner.py), with the DSN read from the environment variable named; an
  unset variable is reported as ``unconfigured``, never skipped silently.
- **Topics in**: ``<topic>.unique`` (every winner, in order of change), in the sink's own
  consumer group ``<app_id>-sink-<topic>-<sink>``. **Out**: the sink's table (one row per
  unique key; onepipe.sinks.db) and ``<topic>.dlq`` for rows the database refuses (with
  the record's key, value and headers, plus ``onepipe.sink``, ``onepipe.reason`` and
  ``onepipe.unique``).
- **Merge rule in the database**: a row is replaced only by a version of higher rank
  (onepipe.schemas.merge), so re-reading ``.unique`` from the start, or a batch applied
  twice, never brings an older version back.
- **Exactly once into the database**: rows and the sink's positions commit in one
  transaction; at assignment a partition is sought to the position in the database
  (Kafka's committed offset is for lag monitoring only). A SIGKILL mid-batch, a
  rebalance to another worker or a lost database connection re-reads from that position
  and writes nothing twice. Dead letters are produced and acknowledged before the batch
  commits: at least once.
- **Failures**: an unreachable database is retried with back-off (state ``failing``, the
  error kept); a schema change the table cannot follow pauses that sink alone (state
  ``paused``) until the schema changes again or the worker restarts.
- **Schema evolution**: new fields add nullable columns; int -> long and float -> double
  widen columns in place.
"""

from onepipe.agents.sink.agent import SinkAgent, SinkMetrics
from onepipe.agents.sink.runner import (
    SinkRunner,
    SinkStatus,
    combined_statuses,
    counted_status,
)

__all__ = ["SinkAgent", "SinkMetrics", "SinkRunner", "SinkStatus", "combined_statuses",
           "counted_status"]
