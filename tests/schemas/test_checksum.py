"""The one checksum: properties over every canonical type, normalisation, exact sums.

Rows are drawn per column type as Arrow takes them (``pa.Table.from_pylist`` with the
spec's canonical schema). The column-wise encoder is held to the Python reference
(:func:`encode_value`) byte for byte, so the properties below hold for both paths.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

import orjson
import pyarrow as pa
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.checksum import (
    CHECKSUM_VERSION,
    canonical_rows,
    checksum,
    encode_value,
    row_hashes,
)
from onepipe.schemas.checksum_spec import ChecksumSpec, hash_type, make_spec
from onepipe.schemas.errors import SchemaError
from onepipe.schemas.exact_sum import ExactSum
from onepipe.schemas.figures import DayFigures, distinct_keys, figures, sums
from onepipe.schemas.metadata import metadata_from_dict
from onepipe.sinks.formats.raw import RawRecord, build_raw_table, decode_parquet, encode_parquet
from onepipe.sinks.formats.topic_view import spec_for

UTC = dt.UTC
MASK = 2**64 - 1
DEC = pa.decimal128(12, 2)


def _ms(d: dt.datetime) -> dt.datetime:
    return d.replace(microsecond=d.microsecond // 1000 * 1000)


def _time_ms(t: dt.time) -> dt.time:
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


# hypothesis takes naive bounds and attaches the zone itself
aware = st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),  # noqa: DTZ001
                     timezones=st.just(UTC))
decimals = st.decimals(min_value=Decimal("-9999999999.99"), max_value=Decimal("9999999999.99"),
                       places=2, allow_nan=False, allow_infinity=False)
words = st.text(alphabet=st.sampled_from(["a", "b", "é", "\x00", "日"]), max_size=3)

#: column -> (canonical Arrow type, values strategy). Every column is nullable.
COLUMNS: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "id": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "qty": (pa.int32(), st.integers(-(2**31), 2**31 - 1)),
    "price": (pa.float64(), st.floats()),
    "ratio": (pa.float32(), st.floats(width=32)),
    "ok": (pa.bool_(), st.booleans()),
    "name": (pa.string(), words),
    "blob": (pa.binary(), st.binary(max_size=4)),
    "code": (pa.binary(3), st.binary(min_size=3, max_size=3)),
    "amount": (DEC, decimals),
    "big": (pa.decimal256(40, 3), st.decimals(min_value=-(10**36), max_value=10**36,
                                              places=3, allow_nan=False)),
    "day": (pa.date32(), st.dates()),
    "at_ms": (pa.timestamp("ms", tz="UTC"), aware.map(_ms)),
    "at_us": (pa.timestamp("us", tz="UTC"), aware),
    "t_ms": (pa.time32("ms"), st.times().map(_time_ms)),
    "t_us": (pa.time64("us"), st.times()),
    "nums": (pa.list_(pa.int32()), st.lists(st.none() | st.integers(-5, 5), max_size=3)),
    "tags": (pa.map_(pa.string(), pa.int64()),
             st.dictionaries(words, st.integers(-3, 3), max_size=3).map(lambda d: list(d.items()))),
    "point": (pa.struct([("x", pa.float64()), ("label", pa.string())]),
              st.fixed_dictionaries({"x": st.none() | st.floats(), "label": st.none() | words})),
    "deep": (pa.list_(pa.struct([("m", pa.map_(pa.string(), pa.float32())),
                                 ("d", pa.list_(pa.date32()))])),
             st.lists(st.none() | st.fixed_dictionaries({
                 "m": st.none() | st.dictionaries(words, st.none() | st.floats(width=32),
                                                  max_size=2).map(lambda d: list(d.items())),
                 "d": st.none() | st.lists(st.none() | st.dates(), max_size=2)}), max_size=2)),
    "nothing": (pa.null(), st.none()),  # a record without fields
}
#: Columns that hold more than one value (all but the null-typed one).
CHANGEABLE = [name for name, (t, _) in COLUMNS.items() if not pa.types.is_null(t)]
SCHEMA = pa.schema([(name, t) for name, (t, _) in COLUMNS.items()])
SPEC = make_spec(SCHEMA, ["id"], ["qty", "price", "ratio", "amount", "big", "id"])

row = st.fixed_dictionaries({name: st.none() | values for name, (_, values) in COLUMNS.items()})
rows = st.lists(row, max_size=12)
#: Rows with distinct keys, as every system that holds a topic stores them.
keyed_rows = rows.map(lambda data: [{**r, "id": i} for i, r in enumerate(data)])


def table(data: Sequence[dict[str, Any]], schema: pa.Schema = SCHEMA) -> pa.Table:
    return pa.Table.from_pylist(list(data), schema=schema)


def same(a: Any, b: Any) -> bool:
    """Equal under the documented canonical forms (-0.0 is 0.0, all NaNs are one)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return same(list(a), list(b))
    return type(a) is type(b) and a == b


def reference_rows(t: pa.Table, spec: ChecksumSpec) -> list[bytes]:
    """Each row's encoding through the Python reference only."""
    columns = [t.column(f.name).cast(f.type).cast(hash_type(f.type)).to_pylist()
               if not pa.types.is_floating(f.type)
               else t.column(f.name).cast(pa.float64()).to_pylist() for f in spec.schema]
    types = [hash_type(f.type) for f in spec.schema]
    return [b"".join(encode_value(col[i], ty) for col, ty in zip(columns, types, strict=True))
            for i in range(t.num_rows)]


# ------------------------------------------------------------------- the encoding


@given(rows, st.integers(0, 3))
def test_column_wise_encoding_matches_the_python_reference(data: list[dict[str, Any]],
                                                           skip: int) -> None:
    t = table(data)
    assert canonical_rows(t, SPEC).to_pylist() == reference_rows(t, SPEC)
    sliced = t.slice(min(skip, t.num_rows))  # arrays with an offset
    assert canonical_rows(sliced, SPEC).to_pylist() == reference_rows(sliced, SPEC)


def test_values_under_null_slots_are_ignored() -> None:
    # Arrow lets a null list or map own values; they must not reach the encoding.
    offsets = pa.array([0, 2, 4, 5], pa.int32())
    mask = pa.array([False, True, False])
    lists = pa.ListArray.from_arrays(offsets, pa.array([1, 2, 3, 4, 5], pa.int64()), mask=mask)
    entries = (pa.array(["a", "b", "c", "d", "e"]), pa.array([1, 2, 3, 4, 5], pa.int64()))
    maps = pa.MapArray.from_arrays(offsets, *entries, mask=mask)
    clean = pa.table({"l": pa.array([[1, 2], None, [5]], pa.list_(pa.int64())),
                      "m": pa.array([[("a", 1), ("b", 2)], None, [("e", 5)]], maps.type)})
    spec = make_spec(clean.schema)
    dirty = pa.table({"l": lists, "m": maps})
    assert row_hashes(dirty, spec) == row_hashes(clean, spec)
    assert canonical_rows(dirty, spec).to_pylist() == reference_rows(clean, spec)


def test_encoding_is_the_documented_bytes() -> None:
    spec = make_spec(pa.schema([("n", pa.int32()), ("s", pa.string()), ("f", pa.float32()),
                                ("b", pa.bool_()), ("d", DEC), ("z", pa.int64())]))
    t = table([{"n": -2, "s": "é", "f": -0.0, "b": True, "d": Decimal("-1.5"), "z": None}],
              spec.schema)
    expected = (b"\x01" + struct.pack("<q", -2)
                + b"\x01" + struct.pack("<Q", 2) + "é".encode()
                + b"\x01" + struct.pack("<d", 0.0)
                + b"\x01\x01"
                + b"\x01" + (-150).to_bytes(16, "little", signed=True)
                + b"\x00")
    assert canonical_rows(t, spec).to_pylist() == [expected]
    assert row_hashes(t, spec).to_pylist() == [xxhash.xxh3_64_intdigest(expected)]


# ------------------------------------------------------------- order and batching


@given(rows, st.randoms(use_true_random=False))
def test_checksum_ignores_row_order(data: list[dict[str, Any]], rnd: Any) -> None:
    shuffled = list(data)
    rnd.shuffle(shuffled)
    assert checksum(table(shuffled), SPEC) == checksum(table(data), SPEC)
    assert sums(table(shuffled), SPEC) == sums(table(data), SPEC)


@given(keyed_rows, st.lists(st.integers(0, 12), max_size=4))
def test_checksum_ignores_batch_splitting(data: list[dict[str, Any]], cuts: list[int]) -> None:
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    parts = [table(data[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    whole = table(data)
    assert sum(checksum(p, SPEC) for p in parts) & MASK == checksum(whole, SPEC)
    chunked = pa.concat_tables([table([]), *parts]) if parts else whole
    assert row_hashes(chunked, SPEC) == row_hashes(whole, SPEC)
    total = sum((figures(p, SPEC) for p in parts), DayFigures.zero(SPEC))
    assert total == figures(whole, SPEC)
    for batch in whole.to_batches(max_chunksize=5):  # RecordBatch input works as well
        assert checksum(batch, SPEC) == checksum(pa.Table.from_batches([batch]), SPEC)


@given(keyed_rows, st.integers(0, 12))
def test_removing_rows_restores_previous_figures(data: list[dict[str, Any]], cut: int) -> None:
    before, added = table(data[:cut]), table(data[cut:])
    whole = figures(table(data), SPEC)
    assert whole - figures(added, SPEC) == figures(before, SPEC)
    zero = whole - whole
    assert (zero.rows, zero.keys, zero.checksum) == (0, 0, 0)
    assert all(s == ExactSum(s.kind, scale=s.scale) for s in zero.sums.values())


def test_large_batches_are_hashed_in_slices() -> None:
    n = 200_000  # more than one internal slice
    t = pa.table({"id": pa.array(range(n), pa.int64())})
    spec = make_spec(t.schema, ["id"], ["id"])
    assert checksum(t, spec) == (checksum(t.slice(0, 70_000), spec)
                                 + checksum(t.slice(70_000), spec)) & MASK
    assert sums(t, spec)["id"].value() == n * (n - 1) // 2
    assert distinct_keys(t, spec) == n


# ------------------------------------------------------------ sensitivity to change


@settings(max_examples=40)
@pytest.mark.parametrize("name", CHANGEABLE)
@given(data=st.data())
def test_any_single_field_change_changes_the_row_hash(name: str, data: st.DataObject) -> None:
    original = data.draw(row)
    values = st.none() | COLUMNS[name][1]
    other = data.draw(values.filter(lambda v: not same(v, original[name])), label="new")
    changed = {**original, name: other}
    hashes = row_hashes(table([original, changed]), SPEC).to_pylist()
    assert hashes[0] != hashes[1]


@pytest.mark.parametrize(("arrow_type", "values"), [
    (pa.int64(), [None, 0]),
    (pa.string(), [None, "", "\x00"]),
    (pa.binary(), [None, b"", b"\x00"]),
    (pa.float64(), [None, 0.0, math.nan]),
    (pa.bool_(), [None, False]),
    (pa.list_(pa.int64()), [None, [], [None], [0]]),
    (pa.map_(pa.string(), pa.int64()), [None, [], [("", None)], [("", 0)]]),
    (pa.struct([("a", pa.int64())]), [None, {"a": None}, {"a": 0}]),
])
def test_null_zero_and_empty_differ(arrow_type: pa.DataType, values: list[Any]) -> None:
    spec = make_spec(pa.schema([("v", arrow_type)]))
    hashes = row_hashes(table([{"v": v} for v in values], spec.schema), spec).to_pylist()
    assert len(set(hashes)) == len(values)


def test_adjacent_fields_do_not_run_together() -> None:
    spec = make_spec(pa.schema([("a", pa.string()), ("b", pa.string())]))
    t = table([{"a": "ab", "b": "c"}, {"a": "a", "b": "bc"}, {"a": None, "b": "abc"}],
              spec.schema)
    assert len(set(row_hashes(t, spec).to_pylist())) == 3


def test_float_canonical_forms() -> None:
    spec = make_spec(pa.schema([("v", pa.float64())]))
    other_nan = struct.unpack("<d", struct.pack("<Q", 0xFFF0000000000001))[0]
    t = table([{"v": 0.0}, {"v": -0.0}, {"v": math.nan}, {"v": other_nan}, {"v": -math.nan},
               {"v": math.inf}, {"v": -math.inf}, {"v": None}], spec.schema)
    h = row_hashes(t, spec).to_pylist()
    assert h[0] == h[1]  # -0.0 is written as 0.0
    assert h[2] == h[3] == h[4]  # every NaN is 0x7FF8000000000000
    assert len({h[0], h[2], h[5], h[6], h[7]}) == 5
    nan_bytes = canonical_rows(t.slice(3, 1), spec)[0].as_py()
    assert nan_bytes == b"\x01" + struct.pack("<Q", 0x7FF8000000000000)


# ------------------------------------------------------------------ normalisation


@given(rows)
def test_the_same_values_in_other_arrow_types_hash_alike(data: list[dict[str, Any]]) -> None:
    t = table(data)
    variants: dict[str, pa.DataType] = {
        "qty": pa.int64(), "id": pa.int64(), "name": pa.large_string(),
        "blob": pa.large_binary(), "code": pa.binary(), "amount": pa.decimal128(30, 2),
        "big": pa.decimal256(60, 3), "ratio": pa.float64(), "at_ms": pa.timestamp("us"),
        "at_us": pa.timestamp("us", tz="Europe/Paris"), "t_ms": pa.time64("us"),
        "nums": pa.large_list(pa.int64()), "tags": pa.map_(pa.large_string(), pa.int32()),
        "point": pa.struct([("x", pa.float64()), ("label", pa.large_string())]),
    }
    # values that fit: the int32 column holds what int32 can, so the cast back is exact
    other = pa.table({
        f.name: t.column(f.name).cast(variants[f.name]) if f.name in variants
        else t.column(f.name) for f in SCHEMA})
    other = other.set_column(SCHEMA.get_field_index("name"), "name",
                             t.column("name").dictionary_encode())
    assert row_hashes(other, SPEC) == row_hashes(t, SPEC)
    assert sums(other, SPEC) == sums(t, SPEC)
    if t.num_rows:
        reordered = other.select(list(reversed(other.column_names))).append_column(
            "_kafka_offset", pa.array(range(t.num_rows), pa.int64()))
        assert checksum(reordered, SPEC) == checksum(t, SPEC)  # columns are taken by name


def test_nested_floats_are_widened_never_narrowed() -> None:
    spec = make_spec(pa.schema([("p", pa.struct([("x", pa.float32())]))]))
    as_float32 = table([{"p": {"x": 0.1}}], spec.schema)
    widened = pa.table({"p": as_float32.column("p").cast(pa.struct([("x", pa.float64())]))})
    assert row_hashes(widened, spec) == row_hashes(as_float32, spec)
    double = pa.table({"p": pa.array([{"x": 0.1}], pa.struct([("x", pa.float64())]))})
    assert row_hashes(double, spec) != row_hashes(as_float32, spec)  # 0.1 is no float32


def test_map_entry_order_does_not_matter() -> None:
    spec = make_spec(pa.schema([("m", pa.map_(pa.string(), pa.int64()))]))
    t = table([{"m": [("a", 1), ("b", 2)]}, {"m": [("b", 2), ("a", 1)]}], spec.schema)
    h = row_hashes(t, spec).to_pylist()
    assert h[0] == h[1]


def test_a_missing_column_is_an_error() -> None:
    t = table([{"id": 1}]).drop_columns(["price"])
    with pytest.raises(SchemaError, match=r"\['price'\].*missing"):
        checksum(t, SPEC)


def test_a_lossy_or_impossible_cast_is_an_error() -> None:
    spec = make_spec(pa.schema([("n", pa.int32()), ("t", pa.timestamp("ms", tz="UTC"))]))
    with pytest.raises(SchemaError, match="'n' has Arrow type int64"):
        checksum(pa.table({"n": pa.array([2**40]), "t": pa.array([0], spec.schema[1].type)}),
                 spec)
    with pytest.raises(SchemaError, match="'t'"):
        checksum(pa.table({"n": pa.array([1], pa.int32()),
                           "t": pa.array([1001], pa.timestamp("us", tz="UTC"))}), spec)
    with pytest.raises(SchemaError, match="'n'"):
        checksum(pa.table({"n": pa.array(["x"]), "t": pa.array([0], spec.schema[1].type)}),
                 spec)


def test_spec_rejects_what_it_cannot_compute() -> None:
    with pytest.raises(SchemaError, match="'nope' is not a column"):
        make_spec(SCHEMA, ["nope"])
    with pytest.raises(SchemaError, match="'name' has Arrow type string"):
        make_spec(SCHEMA, ["id"], ["name"])
    with pytest.raises(SchemaError, match="needs key fields"):
        make_spec(SCHEMA, [], count_distinct=True)
    with pytest.raises(SchemaError, match="'u'.*no canonical encoding"):
        make_spec(pa.schema([("u", pa.dense_union([pa.field("a", pa.int32())]))]))


# -------------------------------------------------------------------- exact sums


def _float_spec() -> ChecksumSpec:
    return make_spec(pa.schema([("v", pa.float64())]), sum_fields=["v"])


def test_float_sums_are_exact_in_any_order() -> None:
    spec = _float_spec()
    values = [1e308, 1e308, -1e308, -1e308, 1.0]
    for order in (values, list(reversed(values)), [1.0, 1e308, -1e308, 1e308, -1e308]):
        total = sums(table([{"v": v} for v in order], spec.schema), spec)["v"]
        assert total.value() == 1.0
        assert total.exact() == 1
    assert sum(values) != 1.0  # what rounded addition gives


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(st.lists(finite | st.floats(width=16, allow_nan=False, allow_infinity=False),
                max_size=20), st.integers(0, 20))
def test_float_sums_merge_exactly(values: list[float], cut: int) -> None:
    spec = _float_spec()
    whole = sums(table([{"v": v} for v in values], spec.schema), spec)["v"]
    a = sums(table([{"v": v} for v in values[:cut]], spec.schema), spec)["v"]
    b = sums(table([{"v": v} for v in values[cut:]], spec.schema), spec)["v"]
    assert a + b == whole and whole - b == a
    exact = sum((Fraction(v) for v in values), Fraction(0))
    assert whole.exact() == exact
    try:
        expected = float(exact)
    except OverflowError:
        expected = math.inf if exact > 0 else -math.inf
    assert whole.value() == expected
    assert ExactSum.from_json(orjson.loads(orjson.dumps(whole.to_json()))) == whole


def test_float_sums_count_infinities_and_nans() -> None:
    spec = _float_spec()

    def total(values: list[float | None]) -> ExactSum:
        return sums(table([{"v": v} for v in values], spec.schema), spec)["v"]

    assert total([math.inf, 1.0, None]).value() == math.inf
    assert total([-math.inf]).value() == -math.inf
    assert math.isnan(total([math.inf, -math.inf]).value())
    assert math.isnan(total([math.nan, 2.0]).value())
    assert (total([math.inf, 1.0]) - total([math.inf])).value() == 1.0


def test_int_sums_pass_int64() -> None:
    spec = make_spec(pa.schema([("n", pa.int64())]), sum_fields=["n"])
    big = [2**63 - 1] * 4 + [-(2**63)] + [5]
    total = sums(table([{"n": n} for n in big], spec.schema), spec)["n"]
    assert total.value() == sum(big) and total.value() > 2**63


@given(st.lists(decimals, max_size=10))
def test_decimal_sums_are_exact(values: list[Decimal]) -> None:
    spec = make_spec(pa.schema([("d", DEC), ("w", pa.decimal256(40, 3))]),
                     sum_fields=["d", "w"])
    t = table([{"d": v, "w": v} for v in values], spec.schema)
    total = sums(t, spec)
    exact = sum((Fraction(v) for v in values), Fraction(0))
    assert Fraction(total["d"].value()) == exact == Fraction(total["w"].value())
    assert total["d"].scale == 2 and total["w"].scale == 3


def test_sums_of_different_kinds_do_not_combine() -> None:
    with pytest.raises(SchemaError, match="different field types"):
        _ = ExactSum("decimal", 1, 2) + ExactSum("decimal", 1, 3)


# --------------------------------------------------------------------- figures


@given(rows)
def test_figures_round_trip_through_json(data: list[dict[str, Any]]) -> None:
    f = figures(table(data), SPEC)
    assert DayFigures.from_json(orjson.loads(orjson.dumps(f.to_json()))) == f
    assert f.to_json()["version"] == CHECKSUM_VERSION


def test_figures_of_another_version_are_refused() -> None:
    data = DayFigures().to_json() | {"version": CHECKSUM_VERSION + 1}
    with pytest.raises(SchemaError, match="recompute"):
        DayFigures.from_json(data)


def test_distinct_keys_counts_key_tuples() -> None:
    spec = make_spec(pa.schema([("a", pa.int64()), ("b", pa.string()), ("v", pa.int64())]),
                     ["a", "b"])
    t = table([{"a": 1, "b": "x", "v": 1}, {"a": 1, "b": "x", "v": 2},
               {"a": 1, "b": "y", "v": 3}], spec.schema)
    assert distinct_keys(t, spec) == 2
    assert distinct_keys(pa.concat_tables([t, table([{"a": None, "b": "x"}], spec.schema)]),
                         spec) == 2  # a key with a null part is no key
    assert figures(t, spec).keys == 2


# ------------------------------------------------------ stream and lake agree


WIDGETS = parse_schema({"type": "record", "name": "Widget", "fields": [
    {"name": "widget_id", "type": "long"},
    {"name": "version", "type": "int"},
    {"name": "price", "type": "double"},
    {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "BLUE"]}},
    {"name": "updated_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "note", "type": ["null", "string"]},
    {"name": "extra", "type": ["null", "int", "string"]},
    {"name": "attrs", "type": {"type": "map", "values": "long"}},
]})
META = metadata_from_dict("widgets", {"key": ["widget_id"],
                                      "order": {"rule": "max", "field": "version"},
                                      "checks": {"sum": ["price", "version"]}})


def test_spec_for_uses_the_lake_types_and_the_catalog_checks() -> None:
    spec = spec_for(WIDGETS, META)
    assert spec.schema.names == WIDGETS.field_names()
    assert spec.schema.field("colour").type == pa.string()  # the lake's dictionary, undone
    assert spec.schema.field("updated_at").type == pa.timestamp("ms", tz="UTC")
    assert (spec.key, spec.sum_fields, spec.count_distinct) == (
        ("widget_id",), ("price", "version"), True)
    assert spec_for(WIDGETS, META) is spec


def test_stream_and_lake_compute_the_same_figures() -> None:
    at = dt.datetime(2024, 5, 1, 12, tzinfo=UTC)
    decoded: list[dict[str, Any] | None] = [
        {"widget_id": i, "version": i % 3, "price": i / 10, "colour": ["RED", "BLUE"][i % 2],
         "updated_at": at, "note": None if i % 2 else f"n{i}",
         "extra": [None, 7, "seven"][i % 3], "attrs": {"b": i, "a": -i}}
        for i in range(50)
    ]
    records = [RawRecord("widgets", 0, i, 0, (), b"k", b"v") for i in range(50)]
    raw = build_raw_table(records, [1] * 50, decoded, [None] * 50, WIDGETS)
    spec = spec_for(WIDGETS, META)
    stream = figures(raw, spec)
    lake = figures(decode_parquet(encode_parquet(raw)).slice(10)
                   .to_batches()[0], spec) + figures(raw.slice(0, 10), spec)
    assert lake == stream and stream.rows == stream.keys == 50
    assert stream.sums["version"].value() == sum(i % 3 for i in range(50))
