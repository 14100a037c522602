"""The Kafka side of ``verify``: the ``.unique`` stream's winners, and where raw gaps were.

:class:`StreamSource` (a :class:`~onepipe.agents.verify.sources.VerifySource`):
``<topic>.unique`` read to the fetch **high watermark** (tansu's ListOffsets is wrong,
DESIGN.md; onepipe.tables.kafka.topics.read_to_end); per Kafka key the last message is the key's
winner (onepipe.agents.dedup.agent: ``.unique`` is strictly increasing in rank per key). Winners are
decoded with the topic's latest schema (Avro resolution for older writers) into the
lake's Arrow layout (onepipe.sinks.formats.raw.build_raw_table, the archive's type mapping) and
placed in days by onepipe.schemas.partition_day, exactly as the compactor places clean rows.
It holds one value per key in memory (read once per source object): fine for tests and
moderate topics; the checksum table (RocksDB, maintained by the dedup agent) is the
scalable source of the same figures. ``.unique`` is looked up in a whole-cluster topic
listing first: a metadata request naming a missing topic would create it (tansu always,
Kafka by default).

:class:`SourceGapLocator` answers "which days did the records of a raw-lake gap belong
to" by reading exactly that offset range of the source topic (while retention still
has it), so a removed archived file is named with its own days.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from onepipe.agents.verify.sources import DaysInMemory, split_days
from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.codec import decode_or_none
from onepipe.schemas.errors import BrokerError
from onepipe.schemas.partition_day import day_name, partition_days
from onepipe.schemas.topic_names import unique_topic
from onepipe.sinks.formats.raw import RawRecord, build_raw_table
from onepipe.sinks.formats.topic_view import TopicView
from onepipe.tables.kafka.clients import KafkaClients
from onepipe.tables.kafka.topics import read_topic, topic_exists

__all__ = ["SourceGapLocator", "StreamSource"]



@dataclass(frozen=True, slots=True)
class _Message:
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


class _Decoder:
    """Framed values -> the lake's typed columns for the view (fastavro per value)."""

    def __init__(self, view: TopicView, reader: AvroSchema,
                 writer_for_id: Callable[[int], AvroSchema]) -> None:
        self.view, self.reader, self.writer_for_id = view, reader, writer_for_id
        #: Values that did not decode (left out).
        self.undecodable = 0

    def table(self, messages: Sequence[_Message]) -> pa.Table:
        records, ids, decoded = [], [], []
        for m in messages:
            schema_id, datum = decode_or_none(m.value, self.writer_for_id, self.reader)
            if datum is None:
                self.undecodable += 1
                continue
            records.append(RawRecord(self.view.meta.topic, m.partition, m.offset, m.timestamp,
                                     (), m.key, m.value))
            ids.append(schema_id)
            decoded.append(datum)
        table = build_raw_table(records, ids, decoded, [None] * len(records), self.reader)
        return table.select(list(self.view.columns))


def _message(r: ConsumerRecord[Any, Any]) -> _Message:
    return _Message(r.partition, r.offset, r.timestamp, r.key, r.value)


class StreamSource(DaysInMemory):
    """``<topic>.unique``'s winners; see the module contract."""

    def __init__(self, view: TopicView, kafka: KafkaClients, reader: AvroSchema,
                 writer_for_id: Callable[[int], AvroSchema], *, name: str = "stream",
                 decode_rows: int = 50_000) -> None:
        super().__init__(view)
        self.kafka, self.name = kafka, name
        self._decoder = _Decoder(view, reader, writer_for_id)
        self._decode_rows = decode_rows
        #: Messages read from ``.unique`` (every version, not just winners).
        self.messages = 0

    @property
    def topic(self) -> str:
        return unique_topic(self.view.meta.topic)

    @property
    def undecodable(self) -> int:
        """Winners that did not decode (left out of the figures)."""
        return self._decoder.undecodable

    async def exists(self) -> bool:
        return await topic_exists(self.kafka, self.topic)

    async def _read_days(self) -> dict[str, pa.Table]:
        winners = await self._read()
        return await asyncio.to_thread(self._by_day, winners)

    async def _read(self) -> list[_Message]:
        winners: dict[bytes, _Message] = {}

        def fold(records: list[ConsumerRecord[Any, Any]]) -> None:
            self.messages += len(records)
            for r in records:
                if r.key is not None:  # the dedup agent always keys .unique
                    winners[r.key] = _message(r)

        await read_topic(self.kafka, self.topic, fold, client_id="onepipe-verify")
        return list(winners.values())

    def _by_day(self, winners: list[_Message]) -> dict[str, pa.Table]:
        parts = [self._decoder.table(winners[i:i + self._decode_rows])
                 for i in range(0, len(winners), self._decode_rows)]
        return split_days(pa.concat_tables(parts), self.view) if parts else {}


class SourceGapLocator:
    """The days of the source records at some offsets (see the module contract)."""

    def __init__(self, view: TopicView, kafka: KafkaClients, reader: AvroSchema,
                 writer_for_id: Callable[[int], AvroSchema], *, max_records: int = 100_000
                 ) -> None:
        self.view, self.kafka = view, kafka
        self._decoder = _Decoder(view, reader, writer_for_id)
        self._max_records = max_records

    async def __call__(self, partition: int, first: int, last: int) -> tuple[str, ...]:
        """Days of offsets ``first``..``last`` of ``partition`` still in Kafka (may be none;
        at most ``max_records`` are read)."""
        topic = self.view.meta.topic
        tp = TopicPartition(topic, partition)
        last = min(last, first + self._max_records - 1)
        consumer = self.kafka.reader("onepipe-verify")
        found: list[_Message] = []

        def keep(records: list[ConsumerRecord[Any, Any]]) -> None:
            found.extend(_message(r) for r in records if first <= r.offset <= last)

        try:
            await consumer.start()
            if topic not in await consumer.topics():
                return ()
            consumer.assign([tp])
            consumer.seek(tp, first)
            # Until the range is passed or the high watermark reached (never end_offsets).
            while True:
                batches = await consumer.getmany(tp, timeout_ms=200, max_records=5000)
                for records in batches.values():
                    keep(records)
                position = await consumer.position(tp)
                highwater = consumer.highwater(tp)
                if position > last or (highwater is not None and position >= highwater):
                    break
        except (KafkaError, OSError) as exc:
            raise BrokerError(f"could not read {topic}[{partition}]@{first} on "
                              f"{self.kafka.bootstrap}: {exc!r}") from exc
        finally:
            await consumer.stop()
        if not found:
            return ()
        table = await asyncio.to_thread(self._decoder.table, found)
        placed = partition_days(table.column(self.view.time_column))
        stamps = partition_days(pa.array([m.timestamp for m in found if m.value is not None],
                                         pa.int64()).cast(pa.timestamp("ms", tz="UTC")))
        numbers = set(pc.unique(placed.drop_null().cast(pa.int32())).to_pylist())
        if not numbers:  # nothing decoded: where the raw layout would have put them
            numbers = set(pc.unique(stamps.drop_null().cast(pa.int32())).to_pylist())
        return tuple(sorted(day_name(n) for n in numbers))
