"""The changelog of an agent's tables: what its messages' keys and values are.

Contract: topic ``<app_id>-<agent>-changelog`` (onepipe.schemas.topic_names.changelog_topic),
partition ``p`` holds the state of input partition ``p``, compacted.

- An **entry** message: key :func:`entry_key` (one byte, the length of the table's
  UTF-8 name, the name, then the table's key bytes), value the entry's value bytes, or
  None (a tombstone) when the entry was deleted. Store keys are the same bytes.
- A **position marker**: key :data:`MARKER_KEY` (it starts with byte 0, which no entry
  key does: table names are not empty), value :func:`encode_marker`: the next input
  offset and the stream time after the batch whose entries precede it. A batch's
  entries count only once its marker follows them (onepipe.tables.state.recovery).
"""

from __future__ import annotations

import orjson

from onepipe.schemas.errors import ConfigError, StateError
from onepipe.tables.state.store import Position

__all__ = ["MARKER_KEY", "decode_marker", "encode_marker", "entry_key", "table_prefix"]

#: The key of every position marker.
MARKER_KEY = b"\x00position"


def table_prefix(name: str) -> bytes:
    """The first bytes of every entry key of table ``name``: its length, then the name."""
    raw = name.encode()
    if not 0 < len(raw) < 256:
        raise ConfigError(f"table name {name!r} must be 1 to 255 bytes (UTF-8); it is "
                          f"{len(raw)}")
    return bytes((len(raw),)) + raw


def entry_key(name: str, key: bytes) -> bytes:
    """The store and changelog key of ``key`` (serialized) in table ``name``."""
    return table_prefix(name) + key


def encode_marker(position: Position) -> bytes:
    """The value of a position marker: ``[next_offset, stream_time_ms]`` as JSON."""
    return orjson.dumps([position.next_offset, position.stream_time_ms])


def decode_marker(value: bytes) -> Position:
    """Inverse of :func:`encode_marker`; ``changelog_offset`` is 0: the reader knows it
    (the marker's own offset + 1)."""
    try:
        next_offset, stream_time_ms = orjson.loads(value)
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise StateError(f"not a position marker value: {value[:60]!r}") from exc
    return Position(next_offset, 0, stream_time_ms)
