"""The checksum agent reads records as columns: either consumer's records give the same
placement, counts and contributions, the librdkafka consumer's columns without one record
object, and the column-wise counting equals the per-record rule it replaced."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from aiokafka import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from onepipe.agents.checksum.decode import winner_contributions
from onepipe.agents.checksum.raw import RawPlacer
from onepipe.agents.verify.sources import TopicView
from onepipe.schemas.avro_schema import AvroSchema, parse_schema
from onepipe.schemas.checksum import row_hashes
from onepipe.schemas.codec import decode_or_none, encode
from onepipe.schemas.metadata import KAFKA_TIMESTAMP, TopicMetadata
from onepipe.schemas.partition_day import partition_days, partition_hours
from onepipe.sinks.formats.raw import RawRecord, build_raw_table
from onepipe.tables.checksum import Contribution, RawCount, contributions, count_raw
from onepipe.tables.kafka.record_columns import PartitionRecords
from tests.fixtures.compact import DAY0, DAY_MS
from tests.fixtures.verify import SCHEMA

READER = parse_schema(SCHEMA)


class _Columns(PartitionRecords):
    """The librdkafka consumer's records, failing if anyone asks for a record object."""

    __slots__ = ()

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return super().__getitem__(index)
        raise AssertionError("a record object was made from the columns")

    def __iter__(self) -> Iterator[Any]:
        raise AssertionError("the columns were iterated record by record")


def _schema_by_id(schema_id: int) -> AvroSchema:
    if schema_id != 7:
        raise KeyError(schema_id)
    return READER


def _values(rng: random.Random, n: int, undecodable: bool) -> list[bytes | None]:
    values: list[bytes | None] = [encode(7, READER, {
        "id": f"k{rng.randrange(20)}", "version": i, "amount": rng.random(), "qty": i,
        "updated_at": DAY0 + rng.randrange(-3 * DAY_MS, 3 * DAY_MS), "note": "n"})
        for i in range(n)]
    if undecodable and n > 4:  # a tombstone, no frame, an unknown id, a cut body
        values[0], values[1] = None, b"junk"
        values[2] = b"\x00\x00\x00\x00\x09" + (values[3] or b"")[5:]
        values[3] = (values[3] or b"")[:7]
    return values


def _both(values: list[bytes | None], rng: random.Random
          ) -> tuple[list[ConsumerRecord[bytes, bytes]], _Columns]:
    """The same records as aiokafka's consumer and as the librdkafka consumer hand over."""
    offsets = list(range(100, 100 + len(values)))
    stamps = [DAY0 + rng.randrange(-2 * DAY_MS, 2 * DAY_MS) for _ in values]
    keys = [None if i % 11 == 5 else f"k{i}".encode() for i in range(len(values))]
    aio = [ConsumerRecord("t", 2, o, s, 0, k, v, None, 0, 0, ())
           for o, s, k, v in zip(offsets, stamps, keys, values, strict=True)]
    cols = _Columns.of("t", 2, offsets, [(1, s) for s in stamps], keys, values, None)
    return aio, cols


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.sampled_from([0, 3, 15, 16, 200]),
       undecodable=st.booleans(), kafka_time=st.booleans())
def test_placement_is_the_same_for_either_consumer(seed: int, n: int, undecodable: bool,
                                                   kafka_time: bool) -> None:
    rng = random.Random(seed)
    meta = TopicMetadata(topic="t", key=("id",),
                         partition_time=KAFKA_TIMESTAMP if kafka_time else "updated_at")
    view = TopicView.build(meta, READER)
    aio, cols = _both(_values(rng, n, undecodable), rng)
    placed = RawPlacer(view, READER).place(_schema_by_id, cols)
    assert placed.pairs() == RawPlacer(view, READER).place(_schema_by_id, aio).pairs()
    assert placed.days.type == pa.int32() and len(placed.undecodable) == n
    if kafka_time:  # a known frame is all it takes; per value, as the raw lake decides
        assert placed.undecodable.to_pylist() == [
            not (v is not None and len(v) >= 5 and v[:5] == b"\x00\x00\x00\x00\x07")
            for v in cols.values]


def _counted(placed: list[tuple[int, bool]], current: dict[int, RawCount], cutoff: int
             ) -> dict[int, RawCount]:
    """The per-record rule count_raw had: every record at or after the cutoff counts."""
    added: dict[int, list[int]] = {}
    for day, bad in placed:
        if day >= cutoff:
            held = added.setdefault(day, [0, 0])
            held[0] += 1
            held[1] += bad
    return {day: current.get(day, RawCount()).plus(RawCount(n, u))
            for day, (n, u) in added.items()}


@given(placed=st.lists(st.tuples(st.integers(-5, 40), st.booleans()), max_size=300),
       current=st.dictionaries(st.integers(-5, 40),
                               st.builds(RawCount, st.integers(1, 9), st.integers(0, 1))),
       cutoff=st.integers(-6, 41), arrow=st.booleans())
def test_column_wise_counting_equals_the_per_record_rule(
        placed: list[tuple[int, bool]], current: dict[int, RawCount], cutoff: int,
        arrow: bool) -> None:
    days = [d for d, _ in placed]
    bad = [b for _, b in placed]
    changed, gone = count_raw(current, pa.array(days, pa.int32()) if arrow else days,
                              pa.array(bad, pa.bool_()) if arrow else bad, cutoff)
    assert changed == _counted(placed, current, cutoff)
    assert gone == frozenset(d for d in current if d < cutoff)


def _contributions_per_record(view: TopicView, records: list[ConsumerRecord[Any, Any]]
                              ) -> list[tuple[bytes, Contribution | None]]:
    """What winner_contributions made before it read columns: a RawRecord per record."""
    kept, raws, ids, decoded = [], [], [], []
    for i, r in enumerate(records):
        schema_id, datum = decode_or_none(r.value, _schema_by_id, READER)
        if datum is None:
            continue
        kept.append(i)
        raws.append(RawRecord("t", r.partition, r.offset, r.timestamp, (), r.key, r.value))
        ids.append(schema_id)
        decoded.append(datum)
    out: list[tuple[bytes, Contribution | None]] = [(r.key or b"", None) for r in records]
    if not kept:
        return out
    table = build_raw_table(raws, ids, decoded, [None] * len(raws), READER)
    times = table.column(view.time_column)
    made = contributions(table, view.spec, row_hashes(table, view.spec).to_pylist(),
                         partition_days(times).cast(pa.int32()).to_pylist(),
                         partition_hours(times).to_pylist())
    for i, c in zip(kept, made, strict=True):
        out[i] = (out[i][0], c)
    return out


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.sampled_from([0, 1, 6, 40]), undecodable=st.booleans())
def test_winner_contributions_are_the_same_for_either_consumer(seed: int, n: int,
                                                               undecodable: bool) -> None:
    rng = random.Random(seed)
    view = TopicView.build(TopicMetadata(topic="t", key=("id",), partition_time="updated_at"),
                           READER)
    aio, cols = _both(_values(rng, n, undecodable), rng)
    from_columns = winner_contributions(view, READER, _schema_by_id, 2, cols)
    assert from_columns == winner_contributions(view, READER, _schema_by_id, 2, aio)
    assert from_columns == _contributions_per_record(view, aio)
