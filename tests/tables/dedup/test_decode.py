"""Reading canonical keys and order values: the batch path equals KeyEncoder, bad values
are reported undecodable instead of misread."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from onepipe.schemas.avro_schema import AvroSchema, parse_schema
from onepipe.schemas.codec import KeyEncoder, encode
from onepipe.schemas.metadata import metadata_from_dict
from onepipe.tables.dedup.decode import TopicReader

V1 = parse_schema({"type": "record", "name": "R", "fields": [
    {"name": "pad", "type": "string"}, {"name": "id", "type": "string"},
    {"name": "n", "type": "int"}, {"name": "raw", "type": "bytes"},
    {"name": "flag", "type": "boolean"}, {"name": "version", "type": "long"}]})
# v2 promotes n to long and adds a field: same key bytes for the same values.
V2 = parse_schema({**V1.json, "fields": [*V1.json["fields"][:2],
                                         {"name": "n", "type": "long"},
                                         *V1.json["fields"][3:],
                                         {"name": "note", "type": "string", "default": ""}]})
KEY = ["id", "n", "raw", "flag"]
META = metadata_from_dict("t", {"partitions": 1, "key": KEY,
                                "order": {"rule": "max", "field": "version"}})
SCHEMAS: dict[int, AvroSchema] = {1: V1, 2: V2}

records = st.fixed_dictionaries({
    "pad": st.text(max_size=30), "id": st.text(max_size=20),
    "n": st.integers(-(2**31), 2**31 - 1), "raw": st.binary(max_size=10),
    "flag": st.booleans(), "version": st.integers(-(2**63), 2**63 - 1)})


def reader() -> TopicReader:
    return TopicReader(META, V2, SCHEMAS.get)


@settings(max_examples=40)
@given(st.lists(st.tuples(st.sampled_from([1, 2]), records), min_size=0, max_size=60))
def test_keys_and_orders_equal_key_encoder_on_both_paths(items: list[tuple[int, Any]]) -> None:
    encoder = KeyEncoder(V2, KEY)
    values = [encode(i, SCHEMAS[i], {**r, "note": "x"} if i == 2 else r) for i, r in items]
    keys, orders = reader().read(values)
    assert keys == [encoder.encode(r) for _, r in items]
    assert orders == [r["version"] for _, r in items]


def test_undecodable_values_are_none_and_do_not_shift_others() -> None:
    good = [{"pad": "p", "id": f"i{i}", "n": i, "raw": b"r", "flag": True, "version": i}
            for i in range(40)]
    values: list[bytes | None] = [encode(1, V1, r) for r in good]
    values[3] = None                                   # tombstone
    values[5] = b"not avro"                            # no frame
    values[7] = encode(99, V1, good[7])                # unknown schema id
    values[9] = values[9][:-3]                         # type: ignore[index]  # truncated
    # Trailing bytes misalign a container block: the batch is refused and read record by
    # record, where value 11 decodes as onepipe.schemas.codec decodes it (trailing bytes ignored).
    values[11] = values[11] + b"\x00\x00"              # type: ignore[operator]
    topic_reader = reader()
    keys, orders = topic_reader.read(values)
    encoder = KeyEncoder(V2, KEY)
    bad = {3, 5, 7, 9}
    assert [i for i, k in enumerate(keys) if k is None] == sorted(bad)
    assert all(keys[i] == encoder.encode(good[i]) and orders[i] == i
               for i in range(40) if i not in bad)
    assert topic_reader.unknown_ids(values) == {99}


def test_vector_clock_topics_read_the_clock_map() -> None:
    schema = parse_schema({"type": "record", "name": "C", "fields": [
        {"name": "id", "type": "string"},
        {"name": "clock", "type": {"type": "map", "values": "long"}}]})
    meta = metadata_from_dict("c", {"key": ["id"],
                                    "order": {"rule": "vector_clock", "field": "clock"}})
    data = [{"id": f"k{i}", "clock": {"a": i, "b": 1}} for i in range(20)]
    keys, orders = TopicReader(meta, schema, {1: schema}.get).read(
        [encode(1, schema, d) for d in data])
    assert keys == [KeyEncoder(schema, ["id"]).encode(d) for d in data]
    assert orders == [d["clock"] for d in data]


ENUMS = parse_schema({"type": "record", "name": "E", "namespace": "t.e", "fields": [
    {"name": "id", "type": "string"},
    {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["R", "G"]},
     "default": "G"},
    {"name": "nested", "type": {"type": "record", "name": "Inner", "fields": [
        {"name": "shade", "type": "Colour"},  # a reference by name to the enum above
        {"name": "alts", "type": {"type": "array", "items": "t.e.Colour"}}]}},
    {"name": "version", "type": "long"}]})
ENUM_META = metadata_from_dict("e", {"partitions": 1, "key": ["id"],
                                     "order": {"rule": "max", "field": "version"}})


def test_enum_fields_take_the_batch_path_and_read_like_key_encoder() -> None:
    # polars refuses Avro enums; the container declares them as their int index instead.
    values = [encode(1, ENUMS, {"id": f"k{i}", "colour": "RG"[i % 2],
                                "nested": {"shade": "R", "alts": ["G", "R"][: i % 3]},
                                "version": i}) for i in range(50)]
    topic = TopicReader(ENUM_META, ENUMS, {1: ENUMS}.get)
    plan = topic._plan(1)
    assert plan is not None and plan.columns is not None
    keys: list[bytes | None] = [None] * len(values)
    orders: list[Any] = [None] * len(values)
    assert topic._read_batch(plan, values, range(len(values)), keys, orders)
    encoder = KeyEncoder(ENUMS, ["id"])
    assert keys == [encoder.encode({"id": f"k{i}"}) for i in range(50)]
    assert orders == list(range(50))


def test_values_over_16_kib_read_like_small_ones() -> None:
    big = [{"pad": "x" * (20_000 + i), "id": f"i{i}", "n": i, "raw": bytes([i]),
            "flag": i % 2 == 0, "version": i} for i in range(40)]
    keys, orders = reader().read([encode(1, V1, r) for r in big])
    assert keys == [KeyEncoder(V2, KEY).encode(r) for r in big]
    assert orders == list(range(40))
