"""One memory budget for every RocksDB state store of a worker (dedup, checksum tables).

Why: each store is one RocksDB database per partition, and each column family of each
database has its own memtable of up to 64 MiB (RocksDB's default) before it flushes. A
worker holding 4 deduplicated partitions therefore grew by several hundred MiB before the
first flush (measured: +34 MiB/min at 1,000 records/s in ``bench/load.py --soak``), and
more partitions meant proportionally more; each database's own 8 MiB block cache and its
index and filter blocks (held outside any cache by default, one set per SST file) grew
beside them. So every store shares one LRU block cache of the budget's size, index and
filter blocks live in it, and a ``WriteBufferManager`` charges the memtables to the same
cache (half the budget at most): blocks, indexes, filters and memtables of all stores
together stay within one figure - what Kafka Streams' ``BoundedMemoryRocksDBConfig``
does. When memtables reach their half, the store being written to flushes (to disk,
where the data belongs anyway); the write path stays the same.

Contract: :func:`set_budget` (the worker calls it at start with
``ONEPIPE_STATE_MEMORY_BYTES``) applies to every store opened after it; :func:`bounded`
adds the shared cache and budget to a store's ``Options``. Writers are never stalled
(``allow_stall`` off): the cap is soft and a flush is what brings memory back under it.
"""

from __future__ import annotations

import threading

from rocksdict import BlockBasedOptions, Cache, Options, WriteBufferManager

__all__ = ["DEFAULT_BUDGET", "bounded", "set_budget"]

#: Memtable bytes all stores of a process may hold together unless told otherwise.
DEFAULT_BUDGET = 256 * 1024 * 1024

_lock = threading.Lock()
_shared: tuple[Cache, WriteBufferManager] | None = None


def set_budget(budget_bytes: int) -> None:
    """The memory budget of every store opened from now on (shared, process-wide)."""
    global _shared  # noqa: PLW0603 - one budget per process is the point
    with _lock:
        if _shared is None:
            cache = Cache(budget_bytes)
            manager = WriteBufferManager.new_write_buffer_manager_with_cache(
                budget_bytes // 2, False, cache)
            _shared = (cache, manager)
        else:
            _shared[0].set_capacity(budget_bytes)
            _shared[1].set_buffer_size(budget_bytes // 2)


def bounded(options: Options, table: BlockBasedOptions | None = None) -> Options:
    """``options`` (and its block-based ``table`` options, if the store sets its own) with
    the shared cache and memtable budget (the default budget if none was set)."""
    if _shared is None:
        set_budget(DEFAULT_BUDGET)
    assert _shared is not None
    cache, manager = _shared
    table = table if table is not None else BlockBasedOptions()
    table.set_block_cache(cache)
    table.set_cache_index_and_filter_blocks(True)
    # The newest files' indexes and filters are read on every lookup: keep them resident.
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    options.set_block_based_table_factory(table)
    options.set_write_buffer_manager(manager)
    return options
