"""One fetch's records of a partition as columns, and one way to read columns of any records.

Contract:

- :class:`PartitionRecords` is what the librdkafka group consumer hands over per
  partition: offsets, timestamps, keys, values and headers as lists, built on the
  consumer's thread from ``consume()``'s messages with one C-level ``map`` per field - no
  Python object per record. It is also a ``Sequence[ConsumerRecord]`` (``len``,
  indexing, slicing, iteration build :class:`RdkafkaRecord`s on demand), so code written
  against aiokafka's lists of records runs on it unchanged.
- The ``*_of`` readers (:func:`offsets_of`, :func:`timestamps_of`, :func:`keys_of`,
  :func:`values_of`, :func:`headers_of`) return a column of *any* records: the list
  itself for :class:`PartitionRecords`, one pass over the records otherwise (aiokafka's
  consumer). Hot paths read columns through them and never ask which consumer fetched.
  :func:`from_offset` drops redelivered records (below an offset) the same way.

Why: building an aiokafka-style record per message cost 0.6 µs on the consumer's thread
(the GIL is held: it is the agent's time) and reading five attributes back 0.15 µs more;
the columns cost ~0.35 µs a record in all (BENCHMARKS.md, "Consumer columns").
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import groupby
from operator import attrgetter, itemgetter
from typing import Any, overload

import confluent_kafka
from aiokafka import ConsumerRecord, TopicPartition

from onepipe.tables.kafka.rdkafka_records import RdkafkaRecord

__all__ = ["PartitionRecords", "from_offset", "headers_of", "keys_of", "offsets_of",
           "partition_columns", "timestamps_of", "values_of"]

Headers = Sequence[tuple[str, bytes]]
#: The message type, untyped: its stubs make every accessor Optional, but a message
#: without an error has them all.
_Message: Any = confluent_kafka.Message
_SECOND = itemgetter(1)


class PartitionRecords(Sequence[ConsumerRecord[bytes, bytes]]):
    """Records of one partition, in offset order, held as columns (module contract)."""

    __slots__ = ("topic", "partition", "offsets", "_stamps", "keys", "values", "_headers",
                 "_timestamps")

    def __init__(self, topic: str, partition: int, offsets: list[int],
                 stamps: list[tuple[int, int]], keys: list[bytes | None],
                 values: list[bytes | None], headers: list[Any] | None) -> None:
        self.topic = topic
        self.partition = partition
        #: Kafka offsets, ascending.
        self.offsets = offsets
        #: librdkafka's (timestamp type, timestamp) per record.
        self._stamps = stamps
        self.keys = keys
        self.values = values
        #: librdkafka's headers per record (None or a list of pairs), or None for none.
        self._headers = headers
        self._timestamps: list[int] | None = None

    @property
    def timestamps(self) -> list[int]:
        """Record timestamps (ms since the epoch)."""
        if self._timestamps is None:
            self._timestamps = list(map(_SECOND, self._stamps))
        return self._timestamps

    @property
    def headers(self) -> list[Headers] | None:
        """Headers per record (a tuple each), or None when no record has any."""
        if self._headers is None:
            return None
        return [tuple(h) if h else () for h in self._headers]

    def __len__(self) -> int:
        return len(self.offsets)

    @overload
    def __getitem__(self, index: int) -> ConsumerRecord[bytes, bytes]: ...

    @overload
    def __getitem__(self, index: slice) -> PartitionRecords: ...

    def __getitem__(self, index: int | slice) -> ConsumerRecord[bytes, bytes] | PartitionRecords:
        if isinstance(index, slice):
            return PartitionRecords(
                self.topic, self.partition, self.offsets[index], self._stamps[index],
                self.keys[index], self.values[index],
                None if self._headers is None else self._headers[index])
        return RdkafkaRecord(self.topic, self.partition, self.offsets[index],
                             self._stamps[index], self.keys[index], self.values[index],
                             None if self._headers is None else self._headers[index])

    def __iter__(self) -> Iterator[ConsumerRecord[bytes, bytes]]:
        headers: Iterable[Any] = (self._headers if self._headers is not None
                                  else (None,) * len(self.offsets))
        topic, partition = self.topic, self.partition
        for offset, stamp, key, value, header in zip(self.offsets, self._stamps, self.keys,
                                                     self.values, headers, strict=True):
            yield RdkafkaRecord(topic, partition, offset, stamp, key, value, header)

    def __repr__(self) -> str:
        span = f"{self.offsets[0]}..{self.offsets[-1]}" if self.offsets else "empty"
        return f"PartitionRecords({self.topic}[{self.partition}] {span}, {len(self)} records)"


def partition_columns(messages: list[Any],
                      partition_of: Callable[[str, int], TopicPartition | None],
                      on_error: Callable[[Any], None]
                      ) -> dict[TopicPartition, PartitionRecords]:
    """One ``consume()`` result as :class:`PartitionRecords` per partition.

    ``partition_of`` names the key of a (topic, partition), or None to drop its records
    (not assigned, paused or sought meanwhile); messages carrying an error go to
    ``on_error``. librdkafka hands over a fetch's messages of one partition together, so
    the runs are found with one C-level pass (``groupby`` over the partition numbers) and
    each run is read field by field with ``map``.
    """
    if any(map(_Message.error, messages)):
        good = []
        for message in messages:
            if message.error() is not None:
                on_error(message)
            else:
                good.append(message)
        messages = good
    batches: dict[TopicPartition, PartitionRecords] = {}
    start = 0
    topics = list(map(_Message.topic, messages))
    for partition, run in groupby(map(_Message.partition, messages)):
        end = start + len(list(run))
        for begin, stop in _topic_runs(topics, start, end):
            tp = partition_of(topics[begin], partition)
            if tp is not None:
                _append(batches, tp, messages[begin:stop])
        start = end
    return batches


def _topic_runs(topics: list[str], start: int, end: int) -> Iterator[tuple[int, int]]:
    """``start:end`` split where the topic changes (a run of one partition number may
    span two topics' partitions of that number; rare, so checked cheaply first)."""
    first = topics[start]
    if topics[end - 1] == first and topics[start:end].count(first) == end - start:
        yield start, end
        return
    begin = start
    for i in range(start + 1, end):
        if topics[i] != topics[i - 1]:
            yield begin, i
            begin = i
    yield begin, end


def _append(batches: dict[TopicPartition, PartitionRecords], tp: TopicPartition,
            run: list[Any]) -> None:
    headers: list[Any] | None = list(map(_Message.headers, run))
    if not any(headers):  # type: ignore[arg-type]
        headers = None
    part = PartitionRecords(tp.topic, tp.partition, list(map(_Message.offset, run)),
                            list(map(_Message.timestamp, run)), list(map(_Message.key, run)),
                            list(map(_Message.value, run)), headers)
    held = batches.get(tp)
    if held is None:
        batches[tp] = part
        return
    # The same partition twice in one result (two fetch responses): one column set.
    held.offsets += part.offsets
    held._stamps += part._stamps
    held.keys += part.keys
    held.values += part.values
    held._timestamps = None
    if held._headers is not None or part._headers is not None:
        held._headers = ((held._headers or [None] * (len(held.offsets) - len(part.offsets)))
                         + (part._headers or [None] * len(part.offsets)))


# ------------------------------------------------------------------ readers
_OFFSET = attrgetter("offset")
_TIMESTAMP = attrgetter("timestamp")
_KEY = attrgetter("key")
_VALUE = attrgetter("value")


def offsets_of(records: Sequence[ConsumerRecord[Any, Any]]) -> Sequence[int]:
    """The records' offsets (ascending)."""
    if isinstance(records, PartitionRecords):
        return records.offsets
    return list(map(_OFFSET, records))


def timestamps_of(records: Sequence[ConsumerRecord[Any, Any]]) -> Sequence[int]:
    """The records' timestamps (ms since the epoch)."""
    if isinstance(records, PartitionRecords):
        return records.timestamps
    return list(map(_TIMESTAMP, records))


def keys_of(records: Sequence[ConsumerRecord[Any, Any]]) -> Sequence[bytes | None]:
    """The records' keys (None for a null key)."""
    if isinstance(records, PartitionRecords):
        return records.keys
    return list(map(_KEY, records))


def values_of(records: Sequence[ConsumerRecord[Any, Any]]) -> Sequence[bytes | None]:
    """The records' values (None for a tombstone)."""
    if isinstance(records, PartitionRecords):
        return records.values
    return list(map(_VALUE, records))


def headers_of(records: Sequence[ConsumerRecord[Any, Any]]) -> Sequence[Headers] | None:
    """Headers per record (a sequence of pairs each), or None when no record has any."""
    if isinstance(records, PartitionRecords):
        return records.headers
    if not any(r.headers for r in records):
        return None
    return [tuple(r.headers) if r.headers else () for r in records]


def from_offset(records: Sequence[ConsumerRecord[Any, Any]], offset: int
                ) -> Sequence[ConsumerRecord[Any, Any]]:
    """The records at ``offset`` or after (those before it were redelivered)."""
    if not records:
        return records
    offsets = offsets_of(records)
    if offsets[0] >= offset:
        return records
    return records[bisect_left(offsets, offset):]
