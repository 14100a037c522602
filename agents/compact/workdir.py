"""The compactor's local work dir: run folders, their locks, DuckDB connections.

Contract:
- Each compaction attempt works in ``<work_dir>/runs/<run id>/`` (its DuckDB database,
  spill files, intermediate Parquet files) and removes it when done, failed or not.
- A run killed outright (SIGKILL, OOM killer, power loss) cannot clean up, and its folder
  may be large. Each run holds an exclusive ``flock`` on ``runs/<run id>.lock`` from
  before its folder exists until the folder is gone; the OS releases it when the process
  dies, so any later run (any process sharing the work dir) removes dead runs' folders
  and never a live one's. A folder without a lock file is never touched.
- DuckDB connections get the configured ``memory_limit``, ``threads`` and a spill
  directory inside the run folder.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import duckdb

from onepipe.agents.compact.config import CompactionConfig


def connect(config: CompactionConfig, run_dir: Path,
            database: str) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection (``database`` a file in the run folder, or ``:memory:``)."""
    con = duckdb.connect(database, config={
        "memory_limit": config.memory_limit,
        "threads": config.threads,
        "temp_directory": str(run_dir / "tmp"),
        "preserve_insertion_order": True,
    })
    return con


def claim_run_dir(run_dir: Path) -> int:
    """Lock, then create, a run folder; the lock's file descriptor."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    (run_dir / "tmp").mkdir(parents=True)
    return fd


def release_run_dir(run_dir: Path, fd: int) -> None:
    """Remove a run folder, then its lock."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.with_suffix(".lock").unlink(missing_ok=True)
    os.close(fd)


def remove_stale_runs(runs: Path) -> int:
    """Delete the folders of runs whose process is gone; how many were removed."""
    removed = 0
    for lock_path in runs.glob("*.lock") if runs.is_dir() else ():
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            continue  # released meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live run
        try:
            shutil.rmtree(lock_path.with_suffix(""), ignore_errors=True)
            lock_path.unlink(missing_ok=True)
            removed += 1
        finally:
            os.close(fd)
    return removed
