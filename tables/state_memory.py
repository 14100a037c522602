"""One memory budget for every RocksDB state store of a worker (dedup, checksum tables).

Why: each store is one RocksDB database per partition, and each column family of each
database has its own memtable of up to 64 MiB (RocksDB's default) before it flushes. A
worker holding 4 deduplicated partitions therefore grew by several hundred MiB before the
first flush (measured: +34 MiB/min at 1,000 records/s in ``bench/load.py --soak``), and
more partitions meant proportionally more. A shared ``WriteBufferManager`` caps the
memtables of all stores together: when they reach the budget, the store being written to
flushes (to disk, where the data belongs anyway). The write path stays the same; only
flushes come earlier, so the budget trades memory for a little more compaction work.

Contract: :func:`set_budget` (the worker calls it at start with
``ONEPIPE_STATE_MEMORY_BYTES``) applies to every store opened after it; :func:`bounded`
adds the budget to a store's ``Options``. Writers are never stalled (``allow_stall``
off): the cap is soft and a flush is what brings memory back under it.
"""

from __future__ import annotations

import threading

from rocksdict import Options, WriteBufferManager

__all__ = ["DEFAULT_BUDGET", "bounded", "set_budget"]

#: Memtable bytes all stores of a process may hold together unless told otherwise.
DEFAULT_BUDGET = 256 * 1024 * 1024

_lock = threading.Lock()
_manager: WriteBufferManager | None = None


def set_budget(budget_bytes: int) -> None:
    """The memtable budget of every store opened from now on (shared, process-wide)."""
    global _manager  # noqa: PLW0603 - one budget per process is the point
    with _lock:
        if _manager is None:
            _manager = WriteBufferManager(budget_bytes, False)
        else:
            _manager.set_buffer_size(budget_bytes)


def bounded(options: Options) -> Options:
    """``options`` with the shared memtable budget (the default one if none was set)."""
    with _lock:
        manager = _manager
    if manager is None:
        set_budget(DEFAULT_BUDGET)
        manager = _manager
    assert manager is not None
    options.set_write_buffer_manager(manager)
    return options
