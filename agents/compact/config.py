"""How a compactor runs: scratch space, DuckDB bounds, retention, file sizes.

Its own module because the compactor, the day executor and the run folders all take it,
and none of them should import another only for this type.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["CompactionConfig"]


@dataclass(frozen=True, slots=True)
class CompactionConfig:
    """How a compactor runs."""

    #: Local scratch space: DuckDB temp files, run folders, the S3 download cache.
    work_dir: Path
    #: SQLAlchemy URI of the Iceberg SQL catalog of the clean lake
    #: (onepipe.sinks.lake.iceberg); every compactor of one lake must use the same one.
    #: '' is the lake's embedded catalog (a local lake's ``iceberg.db``).
    catalog_uri: str = ""
    #: DuckDB ``memory_limit`` of each connection, e.g. ``"1GB"``.
    memory_limit: str = "1GB"
    #: DuckDB threads of each connection.
    threads: int = 2
    #: How long a snapshot stays readable after a newer one is committed (then it is
    #: expired and the files only it referenced are deleted).
    retention_seconds: float = 3600.0
    #: How many times a run re-plans after losing a snapshot commit to another compactor.
    max_retries: int = 5
    #: Rows per Parquet row group of clean files.
    row_group_rows: int = 131_072
    #: Clean files of one day are split at about this size (each is one lake ``put``).
    max_file_bytes: int = 128 * 1024 * 1024
    #: Day tasks run at once (each with its own DuckDB connection and memory_limit).
    jobs: int = 1
