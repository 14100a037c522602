"""The clean lake as Apache Iceberg tables: one per deduplicated topic, any engine reads it.

Contract (the public API; the compactor, ``verify``, ``onepipe lake`` and any later
``onepipe sql`` / warehouse load build on these and nothing else of this folder):

- **Where**: table ``("onepipe", "<topic>")`` in the SQL catalog at
  ``ONEPIPE_ICEBERG_CATALOG_URI`` (SQLite embedded, PostgreSQL in production), located at
  ``<lake URL>/clean/<topic>`` (layout.py). :func:`open_catalog` (catalog.py) opens it for a
  lake store ('' : the local lake's embedded ``iceberg.db``); :func:`clean_table` gives a
  topic's table or None. Plain pyiceberg
  opens the same tables with the same URI, the catalog name ``onepipe`` (a SQL catalog
  keeps each name's tables apart) and the lake's S3 properties: nothing here is needed to
  read them.
- **Shape** (schema.py): every raw and typed column, all optional; partitioned by
  ``day(_kafka_clean_day)``, the day rule every onepipe system uses; sorted by the unique
  key; evolved by union by name (field ids kept). Data files carry field ids.
- **Snapshots** (snapshots.py): one per compaction run, replacing whole days, carrying
  the raw-lake watermark (``onepipe.raw-watermark``) and run id in its summary;
  :func:`read_state` is what a run plans from, :func:`replace_days` the commit
  (``CompactionConflict`` when another commit came first), :func:`expire` the retention.
- **Reading** (read.py): :func:`resolve_snapshot` (head, id, or a time),
  :func:`day_files`, :func:`scan_days` (record batches, one file in memory at a time),
  :func:`read_days` (bounded reads); :func:`day_versions` (versions.py) names the snapshot
  that last wrote each day (what an incremental copy compares).

Errors: :class:`~onepipe.schemas.errors.CatalogError` (the catalog's database, a table
in another lake, an unknown snapshot), ``CompactionConflict`` (a lost commit),
``CompactionError`` (a table onepipe cannot maintain). pyiceberg calls block: run them in
a thread from async code.
"""

from onepipe.sinks.lake.iceberg.catalog import (
    NAMESPACE,
    CleanCatalog,
    clean_table,
    embedded_catalog_uri,
    open_catalog,
)
from onepipe.sinks.lake.iceberg.read import day_files, read_days, resolve_snapshot, scan_days
from onepipe.sinks.lake.iceberg.schema import DAY_COLUMN, ensure_table, field_ids, field_ids_sql
from onepipe.sinks.lake.iceberg.snapshots import (
    RUN_KEY,
    WATERMARK_KEY,
    DayFiles,
    TableState,
    expire,
    read_state,
    referenced_paths,
    replace_days,
    table_seq,
    watermark_of,
)
from onepipe.sinks.lake.iceberg.versions import day_versions

__all__ = ["DAY_COLUMN", "NAMESPACE", "RUN_KEY", "WATERMARK_KEY", "CleanCatalog", "DayFiles",
           "TableState", "clean_table", "day_files", "day_versions", "embedded_catalog_uri",
           "ensure_table", "expire", "field_ids", "field_ids_sql", "open_catalog", "read_days",
           "read_state", "referenced_paths", "replace_days", "resolve_snapshot", "scan_days",
           "table_seq", "watermark_of"]
