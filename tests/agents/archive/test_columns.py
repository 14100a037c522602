"""The archive's packed chunks: the same records back, cut anywhere, split by hour exactly."""

from __future__ import annotations

from aiokafka import ConsumerRecord, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from onepipe.agents.archive.columns import columns_of, cut, hour_runs, pack
from onepipe.sinks.lake.raw_layout import hour_segments

TP = TopicPartition("t", 3)
_HOUR = 3_600_000

blobs = st.one_of(st.none(), st.binary(max_size=40))
headers = st.lists(st.tuples(st.text(max_size=5), st.binary(max_size=5)), max_size=2)
timestamps = st.one_of(st.integers(-2 * _HOUR, 5 * _HOUR),
                       st.sampled_from([-1, 0, _HOUR - 1, _HOUR, 2 * _HOUR]))


def _records(rows: list[tuple[bytes | None, bytes | None, int, list[tuple[str, bytes]]]]
             ) -> list[ConsumerRecord[bytes, bytes]]:
    return [ConsumerRecord(TP.topic, TP.partition, 10 + i, ts, 0, key, value, None,
                           len(key or b""), len(value or b""), tuple(hs))
            for i, (key, value, ts, hs) in enumerate(rows)]


rows = st.lists(st.tuples(blobs, blobs, timestamps, headers), min_size=1, max_size=30)


@given(rows, st.integers(1, 7), st.data())
def test_chunks_hold_the_records_and_cut_anywhere(
        batch: list[tuple[bytes | None, bytes | None, int, list[tuple[str, bytes]]]],
        fetch: int, data: st.DataObject) -> None:
    records = _records(batch)
    chunks = [pack(TP, records[i:i + fetch]) for i in range(0, len(records), fetch)]
    start = data.draw(st.integers(0, len(records) - 1))
    stop = data.draw(st.integers(start + 1, len(records)))
    for part, expected in ((chunks, records), (cut(chunks, start, stop), records[start:stop])):
        columns = columns_of(part)
        assert (columns.topic, columns.partition) == (TP.topic, TP.partition)
        assert columns.offsets.to_pylist() == [r.offset for r in expected]
        assert columns.timestamps.to_pylist() == [r.timestamp for r in expected]
        assert columns.keys.to_pylist() == [r.key for r in expected]
        assert columns.values.to_pylist() == [r.value for r in expected]
        assert list(columns.headers or [()] * len(expected)) == [r.headers for r in expected]
        assert part[0].first_offset() == expected[0].offset
        assert part[-1].last_offset() == expected[-1].offset
        assert sum(c.size for c in part) == sum(len(r.key or b"") + len(r.value or b"")
                                                for r in expected)
        assert max(c.largest for c in part) >= max(len(r.key or b"") + len(r.value or b"")
                                                   for r in expected)


@given(st.lists(timestamps, min_size=1, max_size=40), st.integers(1, 9))
def test_hour_runs_are_the_layouts_hour_segments(stamps: list[int], fetch: int) -> None:
    records = _records([(None, b"v", ts, []) for ts in stamps])
    chunks = [pack(TP, records[i:i + fetch]) for i in range(0, len(records), fetch)]
    assert hour_runs(chunks) == hour_segments(stamps)
