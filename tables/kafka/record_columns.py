"""One fetch's records of a partition as columns, and one way to read columns of any records.

Contract:

- :class:`PartitionRecords` is what the librdkafka group consumer hands over per
  partition: offsets, keys and values as lists, read on the consumer's thread from
  ``consume()``'s messages with one C-level ``map`` per field - no Python object per
  record; timestamps and headers the same way, but only when first asked for (on
  whichever thread asks: the agents that need them pay for them). It is also a
  ``Sequence[ConsumerRecord]`` (``len``, indexing, slicing, iteration build
  :class:`RdkafkaRecord`s on demand), so code written against aiokafka's lists of
  records runs on it unchanged.
- The ``*_of`` readers (:func:`offsets_of`, :func:`timestamps_of`, :func:`keys_of`,
  :func:`values_of`, :func:`headers_of`) return a column of *any* records: the list
  itself for :class:`PartitionRecords`, one pass over the records otherwise (aiokafka's
  consumer). Hot paths read columns through them and never ask which consumer fetched.
  :func:`from_offset` drops redelivered records (below an offset) the same way.

Why: building an aiokafka-style record per message cost 0.6 µs on the consumer's thread
(the GIL is held: it is the agent's time) and reading five attributes back 0.15 µs more;
the columns cost ~0.3 µs a record in all, timestamps and headers read only for the agents
that ask (BENCHMARKS.md, "Hot paths, third pass").
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import groupby
from operator import attrgetter, itemgetter
from typing import Any, Self, overload

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
    """Records of one partition, in offset order, held as columns (module contract).

    Offsets, keys and values are read when the fetch is handed over (every agent reads
    them); timestamps and headers only when asked for, from the fetch's messages, which
    it keeps (the messages share their key and value bytes with the columns).
    """

    __slots__ = ("topic", "partition", "offsets", "keys", "values", "_messages", "_stamps",
                 "_timestamps", "_headers")

    def __init__(self, topic: str, partition: int, messages: list[Any]) -> None:
        self.topic = topic
        self.partition = partition
        #: The ``confluent_kafka.Message`` of each record.
        self._messages = messages
        #: Kafka offsets, ascending.
        self.offsets: list[int] = list(map(_Message.offset, messages))
        self.keys: list[bytes | None] = list(map(_Message.key, messages))
        self.values: list[bytes | None] = list(map(_Message.value, messages))
        self._stamps: list[tuple[int, int]] | None = None
        self._timestamps: list[int] | None = None
        self._headers: list[Any] | None | bool = False  # False: not read yet

    @classmethod
    def of(cls, topic: str, partition: int, offsets: Sequence[int],
           stamps: Sequence[tuple[int, int]], keys: Sequence[bytes | None],
           values: Sequence[bytes | None], headers: Sequence[Any] | None = None) -> Self:
        """Records given field by field, as ``consume()`` would hand them over (tests and
        benchmarks: real ``confluent_kafka.Message`` objects are built)."""
        return cls(topic, partition, [
            confluent_kafka.Message(topic=topic, partition=partition, offset=offset,
                                    timestamp=stamp, key=key, value=value,
                                    headers=None if headers is None else headers[i])
            for i, (offset, stamp, key, value)
            in enumerate(zip(offsets, stamps, keys, values, strict=True))])

    def _stamps_of(self) -> list[tuple[int, int]]:
        """librdkafka's (timestamp type, timestamp) per record."""
        if self._stamps is None:
            self._stamps = list(map(_Message.timestamp, self._messages))
        return self._stamps

    def _raw_headers(self) -> list[Any] | None:
        """librdkafka's headers per record (None or a list of pairs), None for none."""
        if self._headers is False:
            headers = list(map(_Message.headers, self._messages))
            self._headers = headers if any(headers) else None
        assert self._headers is not True
        return self._headers

    @property
    def timestamps(self) -> list[int]:
        """Record timestamps (ms since the epoch)."""
        if self._timestamps is None:
            self._timestamps = list(map(_SECOND, self._stamps_of()))
        return self._timestamps

    @property
    def headers(self) -> list[Headers] | None:
        """Headers per record (a tuple each), or None when no record has any."""
        raw = self._raw_headers()
        if raw is None:
            return None
        return [tuple(h) if h else () for h in raw]

    def __len__(self) -> int:
        return len(self.offsets)

    @overload
    def __getitem__(self, index: int) -> ConsumerRecord[bytes, bytes]: ...

    @overload
    def __getitem__(self, index: slice) -> PartitionRecords: ...

    def __getitem__(self, index: int | slice) -> ConsumerRecord[bytes, bytes] | PartitionRecords:
        if isinstance(index, slice):
            return type(self)(self.topic, self.partition, self._messages[index])
        raw = self._raw_headers()
        return RdkafkaRecord(self.topic, self.partition, self.offsets[index],
                             self._stamps_of()[index], self.keys[index], self.values[index],
                             None if raw is None else raw[index])

    def __iter__(self) -> Iterator[ConsumerRecord[bytes, bytes]]:
        raw = self._raw_headers()
        headers: Iterable[Any] = raw if raw is not None else (None,) * len(self.offsets)
        topic, partition = self.topic, self.partition
        for offset, stamp, key, value, header in zip(self.offsets, self._stamps_of(),
                                                     self.keys, self.values, headers,
                                                     strict=True):
            yield RdkafkaRecord(topic, partition, offset, stamp, key, value, header)

    def _extend(self, other: PartitionRecords) -> None:
        """Append ``other``'s records (the same partition, later in one result)."""
        self._messages = self._messages + other._messages
        self.offsets += other.offsets
        self.keys += other.keys
        self.values += other.values
        self._stamps = self._timestamps = None
        self._headers = False

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
    part = PartitionRecords(tp.topic, tp.partition, run)
    held = batches.get(tp)
    if held is None:
        batches[tp] = part
    else:  # the same partition twice in one result (two fetch responses): one column set
        held._extend(part)


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
