"""Replay's chunks of a raw file: the records today's record-by-record reading gave, in
order, cut into bounded chunks, headers and integer timestamps intact."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from onepipe.agents.replay.chunks import COLUMNS, file_chunks, headers_of
from onepipe.sinks.formats.raw import RawRecord, build_raw_table, decode_parquet, encode_parquet

_BASE = 1_764_151_200_000

blobs = st.one_of(st.none(), st.binary(max_size=40))
header_lists = st.lists(st.tuples(st.sampled_from(["h", "id", "é"]),
                                  st.one_of(st.none(), st.binary(max_size=5))), max_size=3)
rows = st.lists(st.tuples(blobs, blobs, st.integers(0, 5_000), header_lists), max_size=40)


def raw_table(batch: list[tuple[bytes | None, bytes | None, int, Any]], pieces: int) -> pa.Table:
    """A raw file's table as replay reads it (through Parquet), in ``pieces`` chunks."""
    records = [RawRecord("t", 0, i, _BASE + ts, tuple(hs), key, value)
               for i, (key, value, ts, hs) in enumerate(batch)]
    n = len(records)
    table = build_raw_table(records, [None] * n, [None] * n, ["x"] * n, None)
    table = decode_parquet(encode_parquet(table)).select(COLUMNS)
    step = max(1, -(-n // pieces))
    return pa.concat_tables([table.slice(i, step) for i in range(0, n, step)] or [table])


def as_before(table: pa.Table, start_ms: int | None, end_ms: int | None) -> list[Any]:
    """What replay sent before chunks: to_pylist per column, filtered in Python."""
    stamps = table.column("_kafka_timestamp").cast(pa.int64()).to_pylist()
    out = []
    for ts, key, value, headers in zip(stamps, table.column("_kafka_key").to_pylist(),
                                       table.column("_kafka_value").to_pylist(),
                                       table.column("_kafka_headers").to_pylist(), strict=True):
        if (start_ms is not None and ts < start_ms) or (end_ms is not None and ts >= end_ms):
            continue
        out.append((key, value, ts,
                    [(h["key"], h["value"]) for h in headers] if headers else None))
    return out


@given(rows, st.integers(1, 4), st.integers(1, 9), st.integers(1, 200),
       st.one_of(st.none(), st.integers(-10, 5_010)), st.one_of(st.none(), st.integers(-10, 5_010)))
def test_chunks_hold_what_record_by_record_reading_gave(
        batch: list[Any], pieces: int, max_records: int, max_bytes: int,
        start: int | None, end: int | None) -> None:
    table = raw_table(batch, pieces)
    start_ms = None if start is None else _BASE + start
    end_ms = None if end is None else _BASE + end
    chunks = list(file_chunks(table, start_ms, end_ms, max_records=max_records,
                              max_bytes=max_bytes))
    got: list[Any] = []
    for chunk in chunks:
        assert 0 < len(chunk) <= max_records
        assert len(chunk.keys) == len(chunk.timestamps_ms) == len(chunk)
        assert all(type(ts) is int for ts in chunk.timestamps_ms)
        headers = chunk.headers
        assert headers is None or (len(headers) == len(chunk) and any(headers))
        got.extend(zip(chunk.keys, chunk.values, chunk.timestamps_ms,
                       headers if headers is not None else [None] * len(chunk), strict=True))
    assert got == as_before(table, start_ms, end_ms)


def test_chunks_are_bounded_in_bytes_too() -> None:
    table = raw_table([(b"k", b"v" * 1_000, i, []) for i in range(50)], 1)
    chunks = list(file_chunks(table, None, None, max_records=10_000, max_bytes=10_000))
    assert sum(len(c) for c in chunks) == 50
    assert max(len(c) for c in chunks) <= 10  # ~1 KB a record, 10 KB a chunk


@given(st.lists(header_lists, max_size=20), st.data())
def test_headers_of_a_sliced_column(lists: list[Any], data: st.DataObject) -> None:
    column = raw_table([(None, None, 0, hs) for hs in lists], 1).column("_kafka_headers")
    start = data.draw(st.integers(0, len(lists)))
    stop = data.draw(st.integers(start, len(lists)))
    expected = [list(hs) or None for hs in lists[start:stop]]
    got = headers_of(column.slice(start, stop - start))
    assert (got if got is not None else [None] * (stop - start)) == expected
    assert got is None or any(got)
