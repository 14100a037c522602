"""The RocksDB database the dedup tables and the agents' state stores both are.

Both keep a *cache of a changelog*: entries in the default column family, and in the
column family ``meta`` how far into the changelog (and the input) those entries go.
Both write without RocksDB's write-ahead log - a crash may lose the latest batches but
never half of one, because the changelog holds them and recovery reads them again - and
so both need what this module sets up once:

- **Atomic flush**: entries and ``meta`` reach disk together. Without it a memtable
  flush of one family alone could persist a position ahead of the entries it covers,
  and after a crash recovery would skip changelog messages the store never got.
- **Close order**: entries flushed first, then ``meta`` (a store ahead of its position
  only re-applies changelog messages, which is idempotent; a position ahead of the
  entries would skip them), and the family objects dropped before the database closes
  (they hold it, and its LOCK file, open).
- **Point lookups**: most keys asked for are new, so a bloom filter answers "absent"
  without reading blocks from disk, and one on the memtable too (a miss in a 16 MiB
  skiplist otherwise costs ~20 key comparisons; measured at 1M keys: multi-get 0.82 ->
  0.35 µs a key).
- The shared block cache and bounded memtables of onepipe.tables.state_memory.

:class:`UnloggedStore` opens one; its owner reads and writes ``db``, ``meta`` and
``meta_handle`` and writes batches with ``write_options``.
"""

from __future__ import annotations

from pathlib import Path

from rocksdict import BlockBasedOptions, ColumnFamily, Options, WriteOptions

from onepipe.tables.state_memory import bounded, open_with_families

__all__ = ["META", "UnloggedStore"]

#: The column family of the position.
META = "meta"


class UnloggedStore:
    """A database at ``path``: entries plus the ``meta`` family, opened on construction."""

    __slots__ = ("db", "meta", "meta_handle", "write_options")

    def __init__(self, path: Path, *, memtable_bytes: int) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        table = BlockBasedOptions()
        table.set_bloom_filter(10, False)
        options.set_memtable_prefix_bloom_ratio(0.1)
        options.set_memtable_whole_key_filtering(True)
        options.set_atomic_flush(True)  # the module docstring says why
        self.db = open_with_families(
            path, bounded(options, table, write_buffer_bytes=memtable_bytes), [META])
        self.meta = self.db.get_column_family(META)
        self.meta_handle: ColumnFamily = self.db.get_column_family_handle(META)
        self.write_options = WriteOptions()
        # No write-ahead log (module docstring). rocksdict's stub declares a method; it is
        # a property.
        self.write_options.disable_wal = True  # type: ignore[method-assign,assignment]

    def close(self) -> None:
        """Flush entries, then ``meta``, and close (the order is the module's)."""
        self.db.flush()
        self.meta.flush()
        del self.meta, self.meta_handle
        self.db.close()
