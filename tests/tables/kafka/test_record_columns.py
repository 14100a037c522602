"""Records as columns (onepipe.tables.kafka.record_columns): the same records, fewer objects.

``partition_columns`` is fed real ``confluent_kafka.Message`` objects (the type
``consume()`` returns) in the shapes librdkafka hands them over - runs per partition, the
same partition number in two topics back to back, a partition twice in one result,
error messages in between - and must give, per partition, exactly the records the
per-message path gave: the same fields in the same order, as columns and as records.
The readers must give the same columns for aiokafka's records.
"""

from __future__ import annotations

from typing import Any

import confluent_kafka
from aiokafka import ConsumerRecord, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from onepipe.tables.kafka.record_columns import (
    PartitionRecords,
    from_offset,
    headers_of,
    keys_of,
    offsets_of,
    partition_columns,
    timestamps_of,
    values_of,
)

Fields = tuple[str, int, int, tuple[int, int], bytes | None, bytes | None, Any]

_blob = st.one_of(st.none(), st.binary(max_size=8))
_headers: st.SearchStrategy[Any] = st.one_of(st.none(), st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.binary(max_size=3)), min_size=1, max_size=2))
#: A run: (topic, partition, count, whether an error message follows it).
_runs = st.lists(st.tuples(st.sampled_from(["t1", "t2"]), st.integers(0, 2),
                           st.integers(1, 5), st.booleans()), max_size=8)


def _messages(runs: list[tuple[str, int, int, bool]], data: st.DataObject
              ) -> tuple[list[confluent_kafka.Message], list[Fields]]:
    """Messages for ``runs`` (offsets ascending per partition) and each one's fields."""
    messages, fields = [], []
    next_offset: dict[tuple[str, int], int] = {}
    for topic, partition, count, error_after in runs:
        for _ in range(count):
            offset = next_offset.get((topic, partition), 0) + data.draw(st.integers(0, 2))
            next_offset[(topic, partition)] = offset + 1
            stamp = (data.draw(st.sampled_from([1, 2])), data.draw(st.integers(0, 2**41)))
            key, value, headers = data.draw(_blob), data.draw(_blob), data.draw(_headers)
            messages.append(confluent_kafka.Message(
                topic=topic, partition=partition, offset=offset, timestamp=stamp, key=key,
                value=value, headers=headers))
            fields.append((topic, partition, offset, stamp, key, value, headers))
        if error_after:
            messages.append(confluent_kafka.Message(
                topic=topic, partition=partition,
                error=confluent_kafka.KafkaError(confluent_kafka.KafkaError._PARTITION_EOF)))
    return messages, fields


def _record_fields(record: ConsumerRecord[Any, Any]) -> tuple[Any, ...]:
    return (record.topic, record.partition, record.offset, record.timestamp_type,
            record.timestamp, record.key, record.value, tuple(record.headers))


@given(_runs, st.data())
def test_columns_hold_exactly_the_records_of_each_kept_partition(
        runs: list[tuple[str, int, int, bool]], data: st.DataObject) -> None:
    messages, fields = _messages(runs, data)
    dropped = {("t2", 1)}  # e.g. paused while the fetch ran
    errors: list[Any] = []
    batches = partition_columns(
        messages, lambda t, p: None if (t, p) in dropped else TopicPartition(t, p),
        errors.append)

    expected: dict[TopicPartition, list[tuple[Any, ...]]] = {}
    for topic, partition, offset, stamp, key, value, headers in fields:
        if (topic, partition) not in dropped:
            expected.setdefault(TopicPartition(topic, partition), []).append(
                (topic, partition, offset, stamp[0], stamp[1], key, value,
                 tuple(headers or ())))
    assert len(errors) == sum(1 for *_, error_after in runs if error_after)
    assert {tp: [_record_fields(r) for r in records] for tp, records in batches.items()} \
        == expected
    for tp, records in batches.items():
        rows = expected[tp]
        assert isinstance(records, PartitionRecords) and len(records) == len(rows)
        assert [_record_fields(records[i]) for i in range(len(records))] == rows
        assert list(offsets_of(records)) == [r[2] for r in rows]
        assert list(timestamps_of(records)) == [r[4] for r in rows]
        assert list(keys_of(records)) == [r[5] for r in rows]
        assert list(values_of(records)) == [r[6] for r in rows]
        headers = headers_of(records)
        assert (headers is None) == all(not r[7] for r in rows)
        if headers is not None:
            assert [tuple(h) for h in headers] == [r[7] for r in rows]
        middle = offsets_of(records)[len(rows) // 2]
        assert [_record_fields(r) for r in from_offset(records, middle)] \
            == [r for r in rows if r[2] >= middle]


@given(st.lists(st.tuples(_blob, _blob, st.booleans()), min_size=1, max_size=6))
def test_readers_give_the_same_columns_of_aiokafka_records(
        rows: list[tuple[bytes | None, bytes | None, bool]]) -> None:
    records = [ConsumerRecord("t", 0, 10 + 2 * i, 1_000 + i, 0, key, value, None,
                              -1, -1, (("h", b"v"),) if header else ())
               for i, (key, value, header) in enumerate(rows)]
    assert list(offsets_of(records)) == [10 + 2 * i for i in range(len(rows))]
    assert list(timestamps_of(records)) == [1_000 + i for i in range(len(rows))]
    assert list(keys_of(records)) == [k for k, _, _ in rows]
    assert list(values_of(records)) == [v for _, v, _ in rows]
    headers = headers_of(records)
    if any(h for *_, h in rows):
        assert headers == [(("h", b"v"),) if h else () for *_, h in rows]
    else:
        assert headers is None
    assert [r.offset for r in from_offset(records, 11)] == [o for o in offsets_of(records)
                                                             if o >= 11]
    assert from_offset(records, 0) is records
