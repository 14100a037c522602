"""The checksum tables: per-day figures of a topic's winners, kept as the stream flows.

Contract:

- **One table per ``<topic>.unique`` partition** (store.py, RocksDB): each winner's
  contribution (day, row hash, exact sums), per-day and per-hour figures, and the next
  ``.unique`` offset to fold - changes and offset in one ``WriteBatch``, so a fold is
  exactly once across crashes. Folding a key's new winner removes its previous
  contribution from its old day first.
- **Raw counts** (``RawCountStore``): every source record counted in its day, the same
  exactly-once way, so verify can compare them with the raw lake.
- **Retention**: days older than the retention are dropped and tombstoned.
- **Published form** (published.py): the keys and JSON values of ``<topic>.checksums``,
  written by the checksum agent and read back by ``verify``; the one format both share.
"""

from onepipe.tables.checksum.fold import (
    Contribution,
    FoldResult,
    RawCount,
    contributions,
    count_raw,
    fold,
)
from onepipe.tables.checksum.published import Message, fold_messages, raw_messages, window_of
from onepipe.tables.checksum.store import ChecksumStore, ChecksumStoreClosedError, RawCountStore

__all__ = ["ChecksumStore", "ChecksumStoreClosedError", "Contribution", "FoldResult", "Message",
           "RawCount", "RawCountStore", "contributions", "count_raw", "fold", "fold_messages",
           "raw_messages", "window_of"]
