"""What librdkafka reports about produced records, in the shapes the rest of onepipe reads.

- :class:`RecordMetadata`: where one record landed (the fields of aiokafka's onepipe reads).
- :func:`to_aiokafka_error`: librdkafka's error as aiokafka's exception class, so every
  caller's handling (and the HTTP mapping: 413 for a record too large, 503 for the rest)
  is the same whichever client produced.
- :func:`topic_partitions`: a topic's partitions in a metadata answer, or its error.
- :class:`BatchReports`: the reports of one ``send_many`` call, gathered in the poll
  thread and handed to the event loop once, when the last record is reported;
  :class:`CountReports` the same for ``send_columns``, counted instead of kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import confluent_kafka
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
)
from confluent_kafka.admin import ClusterMetadata

__all__ = ["BatchReports", "CountReports", "RecordMetadata", "Report", "to_aiokafka_error",
           "topic_partitions"]

_KE = confluent_kafka.KafkaError
_TIMEOUTS = {_KE._MSG_TIMED_OUT, _KE._TIMED_OUT, _KE.REQUEST_TIMED_OUT}
_UNREACHABLE = {_KE._TRANSPORT, _KE._ALL_BROKERS_DOWN, _KE._RESOLVE, _KE.NETWORK_EXCEPTION}
_TOO_LARGE = {_KE.MSG_SIZE_TOO_LARGE, _KE.RECORD_LIST_TOO_LARGE}
#: A module global: one lookup a report instead of two (``confluent_kafka.`` + name).
_NO_TIMESTAMP = confluent_kafka.TIMESTAMP_NOT_AVAILABLE


class RecordMetadata:
    """Where one record landed (the fields of aiokafka's RecordMetadata onepipe reads)."""

    __slots__ = ("offset", "partition", "timestamp", "topic")

    def __init__(self, topic: str, partition: int, offset: int, timestamp: int | None) -> None:
        #: Topic, partition and offset of the record.
        self.topic = topic
        self.partition = partition
        self.offset = offset
        #: Epoch ms as the broker stored it; None when the broker reported none.
        self.timestamp = timestamp

    def __repr__(self) -> str:
        return f"RecordMetadata({self.topic}[{self.partition}]@{self.offset})"


def to_aiokafka_error(error: confluent_kafka.KafkaError) -> KafkaError:
    """librdkafka's error as the aiokafka exception the rest of onepipe handles."""
    code, text = error.code(), f"{error.name()}: {error.str()} (librdkafka)"
    if code in _TOO_LARGE:
        return MessageSizeTooLargeError(text)
    if code in _TIMEOUTS:
        return KafkaTimeoutError(text)
    if code in _UNREACHABLE:
        return KafkaConnectionError(text)
    return KafkaError(text)


def topic_partitions(metadata: ClusterMetadata, topic: str) -> set[int]:
    """The partitions of ``topic`` in a metadata answer; its error as aiokafka's."""
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        raise to_aiokafka_error(found.error) if found is not None and found.error \
            else KafkaError(f"no metadata for topic {topic!r}")
    return set(found.partitions)


Report = tuple["asyncio.Future[Any]", "confluent_kafka.KafkaError | None", Any]


class BatchReports:
    """The delivery reports of one :meth:`RdkafkaProducer.send_many` call, gathered in the
    poll thread; handed over once, when the last record is reported."""

    __slots__ = ("error", "future", "hand_over", "remaining", "results")

    def __init__(self, future: asyncio.Future[Any], count: int,
                 hand_over: Callable[[Report], None]) -> None:
        self.future = future
        self.hand_over = hand_over
        self.remaining = count
        self.results: list[tuple[int, int, int | None] | None] = [None] * count
        self.error: confluent_kafka.KafkaError | None = None

    def delivered(self, index: int, error: confluent_kafka.KafkaError | None,
                  message: confluent_kafka.Message) -> None:
        # In the poll thread (inside poll()): one report per record.
        if error is None:
            kind, stamp = message.timestamp()
            self.results[index] = (message.partition() or 0, message.offset() or 0,
                                   stamp if kind != _NO_TIMESTAMP else None)
        elif self.error is None:
            self.error = error
        self.remaining -= 1
        if not self.remaining:
            self.hand_over((self.future, self.error, self.results))


class CountReports:
    """The delivery reports of one :meth:`RdkafkaProducer.send_columns` call, counted in the
    poll thread (the first error kept); handed over once, when the last is reported."""

    __slots__ = ("count", "error", "future", "hand_over", "remaining")

    def __init__(self, future: asyncio.Future[Any], count: int,
                 hand_over: Callable[[Report], None]) -> None:
        self.future = future
        self.hand_over = hand_over
        self.count = self.remaining = count
        self.error: confluent_kafka.KafkaError | None = None

    def delivered(self, error: confluent_kafka.KafkaError | None, _: object) -> None:
        # In the poll thread (inside poll()): one call per record, nothing read from it.
        if error is not None and self.error is None:
            self.error = error
        self.remaining -= 1
        if not self.remaining:
            self.hand_over((self.future, self.error, self.count))
