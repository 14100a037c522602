"""SQL over the lake: DuckDB views of every topic's clean Iceberg table and raw files.

Contract (what ``onepipe sql`` builds on; no printing here):

- :func:`open_views` gives a DuckDB connection holding **one view per topic**: ``"<topic>"``
  over its clean Iceberg table, pinned to one snapshot (the head, or ``as_of``), and
  ``"raw_<topic>"`` over its Hive-partitioned raw files (``partition``, ``date`` and
  ``hour`` columns from the path: BIGINT, DATE, BIGINT). Topic names may hold ``.`` and
  ``-``, so a view is named by the topic **in double quotes** (``SELECT * FROM
  "orders.v2"``); :func:`quote` spells it.
- **Lazy, bounded reads.** A local lake's views are DuckDB ``read_parquet`` over the
  snapshot's data files (Iceberg's scan planning: exactly the files of that snapshot,
  never a file a newer or failed compaction left behind), so DuckDB pushes projections
  and filters into the files and streams them. An S3 lake is read through a
  pyarrow dataset over the same files (DuckDB's ``httpfs`` extension cannot be
  installed offline), which DuckDB scans with the same pushdown; nothing is downloaded
  whole.
- **Time travel** (``as_of``): a snapshot id pins the table holding it, and every other
  table to the snapshot current when it was committed (the lake as it was then); a
  time pins every table to its snapshot current then. A table with no snapshot by then
  is an empty view with the table's columns. The raw views are always the raw lake now.
- Only the tables the query names are planned (a query naming none - ``SHOW TABLES`` -
  gets them all): scan planning reads manifests, which is the cost of a view.
- Errors: :class:`~onepipe.schemas.errors.CatalogError` for an unknown snapshot or a bad
  time; the catalog's own failures as ``CatalogError`` (retriable).
"""

from onepipe.sinks.lake.sql.views import (
    RAW_PREFIX,
    LakeViews,
    ViewInfo,
    mentioned,
    open_views,
    quote,
    raw_view_name,
)

__all__ = ["RAW_PREFIX", "LakeViews", "ViewInfo", "mentioned", "open_views", "quote",
           "raw_view_name"]
