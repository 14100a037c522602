"""One block cache for every RocksDB state store of a worker, and bounded memtables.

Why: each store is one RocksDB database per partition (dedup tables, checksum tables,
raw counts), and by default each database has its own 8 MiB block cache, keeps the index
and filter blocks of every SST file in memory outside any cache, and lets each column
family grow a 64 MiB memtable before it flushes. A worker's memory then grew with the
partitions it holds and the files its stores made (measured: +34 MiB/min at 1,000
records/s in ``bench/load.py --soak``). So, as Kafka Streams' ``BoundedMemoryRocksDBConfig``
does: every store shares one LRU block cache of ``ONEPIPE_STATE_MEMORY_BYTES``, index and
filter blocks live in it (the newest files' pinned), and each store states the memtable
size it needs (:func:`bounded`'s ``write_buffer_bytes``, at most two per column family).

Not a shared ``WriteBufferManager``: tried, it flushes the database being written to
whenever the *sum* over all databases is over budget, so a store with a small memtable
flushed on nearly every write - thousands of tiny SST files, "Too many open files".

Contract: :func:`set_budget` (the worker calls it at start) applies to every store opened
after it; :func:`bounded` adds the shared cache and the memtable bound to a store's (or a
column family's) ``Options``; :func:`open_with_families` opens a store with column
families, each bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, Options, Rdict

__all__ = ["DEFAULT_BUDGET", "bounded", "open_with_families", "set_budget"]

#: Block cache bytes all stores of a process share unless told otherwise.
DEFAULT_BUDGET = 128 * 1024 * 1024

_lock = threading.Lock()
_cache: Cache | None = None


def set_budget(budget_bytes: int) -> None:
    """The block cache size of every store opened from now on (shared, process-wide)."""
    global _cache  # noqa: PLW0603 - one cache per process is the point
    with _lock:
        if _cache is None:
            _cache = Cache(budget_bytes)
        else:
            _cache.set_capacity(budget_bytes)


def bounded(options: Options, table: BlockBasedOptions | None = None, *,
            write_buffer_bytes: int = 4 * 1024 * 1024) -> Options:
    """``options`` (and its block-based ``table`` options, if the store sets its own) with
    the shared block cache and memtables of ``write_buffer_bytes`` (two at most)."""
    if _cache is None:
        set_budget(DEFAULT_BUDGET)
    assert _cache is not None
    table = table if table is not None else BlockBasedOptions()
    table.set_block_cache(_cache)
    table.set_cache_index_and_filter_blocks(True)
    # The newest files' indexes and filters are read on every lookup: keep them resident.
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    options.set_block_based_table_factory(table)
    options.set_write_buffer_size(write_buffer_bytes)
    options.set_max_write_buffer_number(2)
    # A WAL file is deleted only once every column family's memtable covering it has
    # flushed: a family written rarely (the applied offset) held every WAL of a busy
    # checksum store alive (measured: a 4 MB log file a minute, none deleted). Past this
    # size RocksDB flushes the families that pin the oldest WAL.
    options.set_max_total_wal_size(4 * write_buffer_bytes)
    return options


def open_with_families(path: Path, options: Options, families: Iterable[str]) -> Rdict:
    """The store at ``path`` (``options`` already :func:`bounded`) with ``families`` (raw
    mode, bounded), each named at the open and created if missing.

    Why named at every open, not found through rocksdict's own record of the families
    (``rocksdict-config.json``): a SIGKILL right after a family was created left it in
    RocksDB's manifest but not in that record, and every later open failed ("Column
    families not opened: meta"): the agent owning the store could never start again.
    """
    options.create_missing_column_families(True)
    return Rdict(str(path), options, column_families={
        name: bounded(Options(raw_mode=True)) for name in families})
