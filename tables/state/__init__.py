"""The tables of developers' agents: keyed and windowed state, kept exactly once.

Contract:

- **Tables** (table.py): ``Table`` and ``WindowTable`` are declared at import time and
  act on the state of the partition the agent is working on (partition.py ``CURRENT``);
  used anywhere else they raise a ``ConfigError`` saying why.
- **One store per agent and input partition** (store.py): RocksDB, entries and the
  ``Position`` (next input offset, next changelog offset, stream time) written in one
  ``WriteBatch``, so the store always holds the state at some committed position.
- **The changelog** (changelog.py) ``<app_id>-<agent>-changelog``, partition ``p`` for
  input partition ``p``: a batch's entries, then a position marker once its outputs are
  acknowledged. A batch counts only once its marker is in the log.
- **Recovery** (recovery.py) reads the changelog from the store's position to the fetch
  high watermark and applies whole batches only (up to a marker); a trailing partial
  batch is discarded (its records are read again) and its keys are written back with
  their committed values at the next commit. A store that claims more of the changelog
  than the log holds belongs to another log and is rebuilt from offset 0.
- **Result**: a killed worker or a moved partition neither loses nor double-counts state
  whose updates are deterministic functions of the records and the state; outputs are
  at-least-once (a batch read again sends again).
- **Windows** (windows.py): tumbling and hopping; a record's time is its partition time;
  a window is open while ``stream_time < end + grace``, so whether a record is late does
  not depend on batch boundaries; closed windows emit once and are deleted.
- **Keys and values** (serde.py): JSON via orjson, deterministic bytes; tuple keys come
  back as tuples.
"""

from onepipe.tables.state.changelog import MARKER_KEY, decode_marker, encode_marker
from onepipe.tables.state.partition import CURRENT, PartitionState, activate
from onepipe.tables.state.recovery import recover
from onepipe.tables.state.store import Position, StateStore
from onepipe.tables.state.table import Table, WindowTable
from onepipe.tables.state.windows import Window, hopping, tumbling

__all__ = ["CURRENT", "MARKER_KEY", "PartitionState", "Position", "StateStore", "Table",
           "Window", "WindowTable", "activate", "decode_marker", "encode_marker", "hopping",
           "recover", "tumbling"]
