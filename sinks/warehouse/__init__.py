"""Warehouse load: a topic's clean days copied into a PostgreSQL table, a day at a time.

Contract (what ``onepipe warehouse load`` and ``onepipe verify --warehouse`` build on):

- **What is copied**: every column of the topic's clean Iceberg table (the head
  snapshot) - the typed columns, the ``_kafka_*`` columns and the day column
  ``_kafka_clean_day`` - into table ``<topic>`` with every character outside
  ``[A-Za-z0-9_]`` mapped to ``_`` (names.py; ``--table`` names another), in the types
  the online sinks use for the same Arrow types (onepipe.sinks.db.columns: BIGINT, TEXT,
  TIMESTAMPTZ, NUMERIC, JSONB, ...). New columns of the Iceberg schema are added
  (nullable), int widens to bigint; any other change of a column's type raises
  :class:`~onepipe.schemas.errors.WarehouseError` and copies nothing.
- **Atomic per day, by partition swap**: the table is partitioned by the day column, one
  partition per day. Each day is one transaction: COPY the snapshot's rows of the day
  into a new partition table, record the load in ``onepipe_loads``, detach and drop the
  day's old partition, attach the new one. A reader (any isolation level) sees a day
  wholly as it was or wholly as loaded, never a mix; the swap holds the table's
  exclusive lock only for the detach/attach itself, and replacing a day costs the same
  whatever it held (no DELETE, no dead rows). A load that fails (a row the database
  refuses) or is killed mid-way leaves every day it had not committed exactly as it was
  and no stray partition (PostgreSQL rolls the open transaction back, the new partition
  with it), the days it committed whole and new, and ``onepipe_loads`` saying which is
  which. Two loads of one table queue on an advisory lock for the swap, so the last one
  wins each day whole. A table of that name that is not partitioned (not made by the
  load) is refused.
- **Bookkeeping**: ``onepipe_loads(topic, table_name, day, snapshot_id, rows,
  loaded_at)``, one row per day loaded, written in that day's transaction.
  ``snapshot_id`` is the snapshot that last wrote the day (onepipe.sinks.lake.iceberg.
  day_versions). **Incremental** loads copy only days whose version differs from the one
  recorded (or that were never loaded); a full load copies every day asked for. Either
  way a recorded day the snapshot no longer holds is emptied.
- **Reading back** (read.py): the table's days and rows of one day, in chunks, for
  ``verify``'s warehouse source (onepipe.agents.verify.warehouse).
- Errors: :class:`~onepipe.schemas.errors.WarehouseError` naming the table, the day and
  the database's reason (retriable when the database did not answer); DSNs appear
  without passwords.
"""

from onepipe.sinks.warehouse.load import DayPlan, LoadReport, load_topic, plan_days
from onepipe.sinks.warehouse.names import LOADS_TABLE, check_table, warehouse_table
from onepipe.sinks.warehouse.read import day_rows, loaded_days, table_columns, warehouse_days

__all__ = ["LOADS_TABLE", "DayPlan", "LoadReport", "check_table", "day_rows", "load_topic",
           "loaded_days", "plan_days", "table_columns", "warehouse_days", "warehouse_table"]
