"""The checksum table as a ``verify`` system: figures from ``<topic>.checksums``.

:class:`ChecksumTableSource` (a :class:`~onepipe.agents.verify.sources.VerifySource`, shown as
``checksum``):

- ``figures(days)``: ``<topic>.checksums`` (onepipe.agents.checksum.agent) read to the fetch
  **high watermark** (tansu's ListOffsets is wrong, DESIGN.md), the latest value per key
  ``<partition>/<day>`` (a tombstone removes it), the partitions of each day summed. The
  topic is looked up in a whole-cluster listing first (a metadata request naming it
  would create it); absent, the table holds no day. Each partition's figures are as of
  the ``.unique`` offset it was published at (``unique_offsets`` after a read): compare a
  quiet topic, or expect the table to trail a busy one by the agent's lag. Hour records
  (``<p>/<day>T<HH>``) and raw counts (``<p>/<day>/raw``) are not day figures.
- The same read also fills ``raw_counts`` (day -> :class:`RawCount`: every source record
  placed in the day, partitions summed; onepipe.agents.verify.compare compares ``records``
  with the raw lake's) and ``hour_figures`` (``YYYY-MM-DDTHH`` -> figures; not compared by
  verify, which compares days), and ``source_offsets`` (source partition -> the lowest
  offset its raw counts are as of).
- The drill-down (``bucket_summaries``, ``keys``) is answered by the ``.unique`` stream
  source given: the table keeps per-key contributions only in the workers' local
  RocksDB (spread over the members of the group, not reachable from a verify run), and
  the table is by construction the fold of that very stream. So when the table's figures
  differ from the stream's, the drill-down finds no key (the difference is in the fold,
  not in the data); when another system differs, the keys it names are the stream's.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import ConsumerRecord

from onepipe.agents.verify.sources import BucketSummary, DayRange, KeyRows
from onepipe.agents.verify.stream import StreamSource
from onepipe.schemas.figures import DayFigures
from onepipe.schemas.topic_names import checksums_topic
from onepipe.sinks.formats.topic_view import TopicView
from onepipe.tables.checksum import RawCount, window_of
from onepipe.tables.kafka.clients import KafkaClients
from onepipe.tables.kafka.topics import read_topic, topic_exists

__all__ = ["ChecksumTableSource"]


class ChecksumTableSource:
    """The published checksum table of one topic; see the module contract."""

    def __init__(self, view: TopicView, kafka: KafkaClients, stream: StreamSource, *,
                 name: str = "checksum") -> None:
        self.view, self.kafka, self.stream, self.name = view, kafka, stream, name
        #: ``.unique`` partition -> the lowest offset its published days are as of.
        self.unique_offsets: dict[int, int] = {}
        #: Source partition -> the lowest offset its published raw counts are as of.
        self.source_offsets: dict[int, int] = {}
        #: Day -> raw record count (partitions summed), of the days asked for.
        self.raw_counts: dict[str, RawCount] = {}
        #: ``YYYY-MM-DDTHH`` -> figures (partitions summed), of the days asked for.
        self.hour_figures: dict[str, DayFigures] = {}

    @property
    def topic(self) -> str:
        return checksums_topic(self.view.meta.topic)

    async def exists(self) -> bool:
        return await topic_exists(self.kafka, self.topic)

    async def _latest(self) -> dict[bytes, dict[str, Any]]:
        latest: dict[bytes, dict[str, Any] | None] = {}

        def keep(records: list[ConsumerRecord[Any, Any]]) -> None:
            for r in records:
                if r.key is not None:
                    latest[r.key] = orjson.loads(r.value) if r.value is not None else None

        await read_topic(self.kafka, self.topic, keep, client_id="onepipe-verify")
        return {k: v for k, v in latest.items() if v is not None}

    async def figures(self, days: DayRange | None) -> dict[str, DayFigures]:
        out: dict[str, DayFigures] = {}
        hours: dict[str, DayFigures] = {}
        raw: dict[str, RawCount] = {}
        offsets: dict[int, int] = {}
        source_offsets: dict[int, int] = {}
        for value in (await self._latest()).values():
            day, window = value["day"], window_of(value)
            partition = int(value["partition"])
            if window == "raw":
                offset = int(value["source_offset"])
                source_offsets[partition] = min(source_offsets.get(partition, offset), offset)
                if days is None or day in days:
                    count = RawCount(int(value["raw"]["records"]),
                                     int(value["raw"]["undecodable"]))
                    raw[day] = raw.get(day, RawCount()).plus(count)
                continue
            offset = int(value["unique_offset"])
            offsets[partition] = min(offsets.get(partition, offset), offset)
            if days is not None and day not in days:
                continue
            figures = DayFigures.from_json(value["figures"])
            held = hours if window == "hour" else out
            name = value["hour"] if window == "hour" else day
            held[name] = held[name] + figures if name in held else figures
        self.unique_offsets, self.source_offsets = offsets, source_offsets
        self.raw_counts = {day: raw[day] for day in sorted(raw)}
        self.hour_figures = {hour: hours[hour] for hour in sorted(hours)}
        return {day: out[day] for day in sorted(out)}

    async def bucket_summaries(self, day: str, bits: int, within_bits: int = 0,
                               within: frozenset[int] = frozenset()
                               ) -> dict[int, BucketSummary]:
        return await self.stream.bucket_summaries(day, bits, within_bits, within)

    async def keys(self, day: str, bits: int, chosen: frozenset[int]) -> dict[int, KeyRows]:
        return await self.stream.keys(day, bits, chosen)
