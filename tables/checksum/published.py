"""The checksum table as published to ``<topic>.checksums``: keys and values.

Written by the checksum agent (onepipe.agents.checksum), read back by ``verify``
(onepipe.agents.verify.checksums): the format both sides share lives here, below both.

One compacted partition, keyed per source partition and window; the value is JSON, a
tombstone (None) when the window is dropped:

- ``<p>/<day>``: ``{figures, unique_offset, partition, day}`` - the day's figures of
  ``.unique[p]`` as of ``unique_offset`` (:meth:`DayFigures.to_json`);
- ``<p>/<day>T<HH>``: the same for one hour, with ``hour`` (``YYYY-MM-DDTHH``) added;
- ``<p>/<day>/raw``: ``{raw: {records, undecodable}, source_offset, partition, day}`` -
  the raw record count of source partition ``p`` on that day as of ``source_offset``.

:func:`window_of` tells the three apart when read back (onepipe.agents.verify.checksums).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from onepipe.schemas.figures import DayFigures
from onepipe.schemas.partition_day import day_name, hour_name
from onepipe.tables.checksum.fold import RawCount

__all__ = ["Message", "fold_messages", "raw_messages", "window_of"]

#: ``(key, value or None)``.
Message = tuple[bytes, bytes | None]


def fold_messages(partition: int, offset: int, days: Mapping[int, DayFigures],
                  dropped: Iterable[int], hours: Mapping[int, DayFigures],
                  dropped_hours: Iterable[int]) -> list[Message]:
    """The day and hour records of a fold of ``.unique[partition]`` up to ``offset``."""
    out: list[Message] = []
    for day, figures in sorted(days.items()):
        out.append((f"{partition}/{day_name(day)}".encode(), orjson.dumps({
            "figures": figures.to_json(), "unique_offset": offset, "partition": partition,
            "day": day_name(day)})))
    for hour, figures in sorted(hours.items()):
        out.append((f"{partition}/{hour_name(hour)}".encode(), orjson.dumps({
            "figures": figures.to_json(), "unique_offset": offset, "partition": partition,
            "day": day_name(hour // 24), "hour": hour_name(hour)})))
    out += [(f"{partition}/{day_name(d)}".encode(), None) for d in sorted(dropped)]
    out += [(f"{partition}/{hour_name(h)}".encode(), None) for h in sorted(dropped_hours)]
    return out


def raw_messages(partition: int, offset: int, days: Mapping[int, RawCount],
                 dropped: Iterable[int]) -> list[Message]:
    """The raw count records of source partition ``partition`` counted up to ``offset``."""
    out: list[Message] = [(f"{partition}/{day_name(day)}/raw".encode(), orjson.dumps({
        "raw": count.to_json(), "source_offset": offset, "partition": partition,
        "day": day_name(day)})) for day, count in sorted(days.items())]
    out += [(f"{partition}/{day_name(d)}/raw".encode(), None) for d in sorted(dropped)]
    return out


def window_of(value: Mapping[str, Any]) -> str:
    """``day``, ``hour`` or ``raw``: what a published value holds."""
    if "raw" in value:
        return "raw"
    return "hour" if "hour" in value else "day"
