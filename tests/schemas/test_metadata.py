"""Topic metadata: parsing, schema checks, canonical JSON round trip, byte sizes."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import Any

import avro.errors
import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from onepipe.schemas.avro_schema import AvroSchema, parse_schema
from onepipe.schemas.compatibility import Compatibility
from onepipe.schemas.errors import MetadataError
from onepipe.schemas.metadata import (
    MAX_FLUSH_BYTES,
    ORDER_RULES,
    SINK_KINDS,
    ArchivePolicy,
    Checks,
    OrderRule,
    SinkSpec,
    TopicMetadata,
    metadata_from_dict,
    metadata_to_dict,
)
from onepipe.schemas.metadata_checks import validate_against_schema
from onepipe.schemas.sizes import UNITS, parse_byte_size

DESIGN_EXAMPLE = """\
topic: widgets
schema: widgets.avsc              # path beside this file (or the schema inline)
compatibility: BACKWARD_TRANSITIVE
partitions: 4
key: [widget_id]
order: {rule: max, field: version}  # {rule: first} | {rule: vector_clock, field: clock}
partition_time: updated_at          # a timestamp field, or `kafka` for the record timestamp
checks: {count_distinct: key, sum: [price], checksum: row}
archive: {flush_records: 10000, flush_bytes: 64MiB, flush_seconds: 60}
sinks:
  - {name: widgets_pg, kind: postgres, dsn_env: WIDGETS_PG_DSN, table: widgets}
"""

WIDGET_FIELDS: list[dict[str, Any]] = [
    {"name": "widget_id", "type": "string"},
    {"name": "version", "type": "long"},
    {"name": "updated_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "price", "type": "double"},
    {"name": "clock", "type": {"type": "map", "values": "long"}},
    {"name": "name", "type": ["null", "string"], "default": None},
]


def record(*fields: dict[str, Any], namespace: str | None = None) -> AvroSchema:
    schema: dict[str, Any] = {"type": "record", "name": "Widget", "fields": list(fields)}
    if namespace is not None:
        schema["namespace"] = namespace
    with warnings.catch_warnings():
        # Apache Avro 1.12 does not know `local-timestamp-*` and warns that it reads a
        # plain long; the schema is still valid, and we test that metadata refuses it.
        warnings.simplefilter("ignore", avro.errors.IgnoredLogicalType)
        return parse_schema(schema)


WIDGETS = record(*WIDGET_FIELDS)


def meta(**data: Any) -> TopicMetadata:
    return metadata_from_dict("widgets", data)


def rejects(path: str | None, call: Callable[[], object], *words: str) -> MetadataError:
    """``call`` raises a MetadataError for ``path``, naming it and ``words``."""
    with pytest.raises(MetadataError) as info:
        call()
    assert info.value.field == path
    if path is not None:
        assert info.value.message.startswith(f"{path}: ")
    for word in words:
        assert word in info.value.message
    return info.value


# ------------------------------------------------------------------ parsing


def test_design_example_parses() -> None:
    parsed = metadata_from_dict("widgets", yaml.safe_load(DESIGN_EXAMPLE))
    assert parsed == TopicMetadata(
        topic="widgets",
        key=("widget_id",),
        order=OrderRule("max", "version"),
        partition_time="updated_at",
        partitions=4,
        compatibility="BACKWARD_TRANSITIVE",
        checks=Checks(count_distinct=True, sums=("price",), row_checksum=True),
        archive=ArchivePolicy(True, 10_000, 64 * 1024 * 1024, 60.0),
        sinks=(SinkSpec("widgets_pg", "postgres", "WIDGETS_PG_DSN", "widgets"),),
    )
    validate_against_schema(parsed, WIDGETS)


def test_defaults() -> None:
    assert meta() == TopicMetadata("widgets")
    assert meta() == TopicMetadata(
        "widgets", (), OrderRule("first"), "kafka", 1, "BACKWARD_TRANSITIVE",
        Checks(False, (), True), ArchivePolicy(True, 10_000, 64 * 1024**2, 60.0), (),
    )
    # count_distinct defaults to on exactly when there is a key, also inside `checks`.
    assert meta(key="widget_id").checks == Checks(True, (), True)
    assert meta(key="widget_id", checks={"sum": "price"}).checks == Checks(True, ("price",))


def test_explicit_nulls_mean_defaults() -> None:
    assert meta(key=None, order=None, checks=None, archive=None, sinks=None,
                partitions=None, compatibility=None, partition_time=None) == meta()
    assert meta(archive={"flush_bytes": None}).archive == ArchivePolicy()


def test_key_string_or_list_and_schema_ignored() -> None:
    assert meta(key="widget_id").key == ("widget_id",)
    assert meta(key=["a", "b"], schema={"inline": True}).key == ("a", "b")
    assert meta(topic="widgets").topic == "widgets"


def test_compatibility_is_case_insensitive_and_canonical() -> None:
    for level in Compatibility:
        assert meta(compatibility=level.value.lower()).compatibility == level.value


def test_archive_partial_and_sizes() -> None:
    archive = meta(archive={"flush_bytes": "512KiB", "enabled": False}).archive
    assert archive == ArchivePolicy(False, 10_000, 512 * 1024, 60.0)
    assert meta(archive={"flush_bytes": 100, "flush_seconds": 0.5}).archive.flush_seconds == 0.5


def test_checks_switched_off() -> None:
    checks = meta(key="id", checks={"count_distinct": False, "checksum": False}).checks
    assert checks == Checks(False, (), False)
    assert meta(key="id", checks={"count_distinct": True, "checksum": True}).checks == Checks(
        True, (), True)


def test_topic_names() -> None:
    assert metadata_from_dict("a" * 249, {}).topic == "a" * 249
    assert metadata_from_dict("a.b-c_D9", {}).topic == "a.b-c_D9"


@pytest.mark.parametrize("topic", ["", ".", "..", "a" * 250, "bad topic", "wïdgets", "a/b"])
def test_rejects_bad_topic_name(topic: str) -> None:
    rejects("topic", lambda: metadata_from_dict(topic, {}), "Kafka topic name",
            repr(topic)[:60], f"({len(topic)} characters)")


def test_rejects_topic_mismatch() -> None:
    rejects("topic", lambda: meta(topic="gadgets"), "'gadgets'", "'widgets'")


def test_rejects_non_mapping() -> None:
    rejects(None, lambda: metadata_from_dict("widgets", ["key"]), "mapping", "list")  # type: ignore[arg-type]  # the point of the test


def test_rejects_unknown_top_level_key() -> None:
    rejects("partiton_time", lambda: meta(partiton_time="updated_at"),
            "unknown key", "partition_time")


@pytest.mark.parametrize(("value", "path"), [
    (3, "key"),
    ({"widget_id": 1}, "key"),
    ("", "key[0]"),
    (["widget_id", 7], "key[1]"),
    (["widget_id", "widget_id"], "key[1]"),
    (["widget-id"], "key[0]"),
])
def test_rejects_bad_key(value: object, path: str) -> None:
    rejects(path, lambda: meta(key=value), path)


@pytest.mark.parametrize("value", [0, 10_001, -1, True, "4", 4.0])
def test_rejects_bad_partitions(value: object) -> None:
    rejects("partitions", lambda: meta(partitions=value), "1 to 10000", repr(value))


@pytest.mark.parametrize("value", ["SOMETIMES", 3, ""])
def test_rejects_bad_compatibility(value: object) -> None:
    rejects("compatibility", lambda: meta(compatibility=value),
            repr(value), "BACKWARD_TRANSITIVE", "FULL")


@pytest.mark.parametrize(("order", "key", "path", "word"), [
    ("max", ["id"], "order", "mapping"),
    ({"rule": "max", "field": "v", "by": "x"}, ["id"], "order.by", "unknown key"),
    ({"rule": "latest"}, ["id"], "order.rule", "'latest'"),
    ({"rule": "wall_clock", "field": "ts"}, ["id"], "order.rule", "vector_clock"),
    ({"field": "v"}, ["id"], "order.rule", "max, first, vector_clock"),
    ({"rule": "max"}, ["id"], "order.field", "int/long"),
    ({"rule": "vector_clock"}, ["id"], "order.field", "map<long>"),
    ({"rule": "first", "field": "v"}, ["id"], "order.field", "takes no field"),
    ({"rule": "max", "field": 3}, ["id"], "order.field", "int 3"),
    ({"rule": "max", "field": "v"}, [], "order.rule", "no key"),
    ({"rule": "max", "field": "id"}, ["id"], "order.field", "key field"),
])
def test_rejects_bad_order(order: object, key: list[str], path: str, word: str) -> None:
    rejects(path, lambda: meta(key=key, order=order), word)


@pytest.mark.parametrize("value", [5, "updated-at", "", ["updated_at"]])
def test_rejects_bad_partition_time(value: object) -> None:
    rejects("partition_time", lambda: meta(partition_time=value), "'kafka'", repr(value))


@pytest.mark.parametrize(("checks", "key", "path", "word"), [
    (["sum"], ["id"], "checks", "mapping"),
    ({"avg": ["price"]}, ["id"], "checks.avg", "unknown key"),
    ({"count_distinct": "rows"}, ["id"], "checks.count_distinct", "'rows'"),
    ({"count_distinct": "key"}, [], "checks.count_distinct", "no key"),
    ({"checksum": "column"}, ["id"], "checks.checksum", "'column'"),
    ({"sum": 3}, ["id"], "checks.sum", "list"),
    ({"sum": ["price", 1]}, ["id"], "checks.sum[1]", "int 1"),
    ({"sum": ["price", "price"]}, ["id"], "checks.sum[1]", "twice"),
])
def test_rejects_bad_checks(checks: object, key: list[str], path: str, word: str) -> None:
    rejects(path, lambda: meta(key=key, checks=checks), word)


@pytest.mark.parametrize(("archive", "path", "word"), [
    ("daily", "archive", "mapping"),
    ({"flush_rows": 10}, "archive.flush_rows", "flush_records"),
    ({"enabled": "yes"}, "archive.enabled", "true or false"),
    ({"flush_records": 0}, "archive.flush_records", "from 1"),
    ({"flush_records": True}, "archive.flush_records", "bool"),
    ({"flush_bytes": "64 mb"}, "archive.flush_bytes", "'64 mb'"),
    ({"flush_bytes": "64Mb"}, "archive.flush_bytes", "MiB"),
    ({"flush_bytes": -1}, "archive.flush_bytes", "negative"),
    ({"flush_bytes": 0}, "archive.flush_bytes", "5GiB"),
    ({"flush_bytes": "6GiB"}, "archive.flush_bytes", "'6GiB'"),
    ({"flush_bytes": True}, "archive.flush_bytes", "bool"),
    ({"flush_bytes": 1.5}, "archive.flush_bytes", "float"),
    ({"flush_seconds": 0}, "archive.flush_seconds", "above 0"),
    ({"flush_seconds": -5}, "archive.flush_seconds", "-5"),
    ({"flush_seconds": float("inf")}, "archive.flush_seconds", "inf"),
    ({"flush_seconds": float("nan")}, "archive.flush_seconds", "nan"),
    ({"flush_seconds": 86_401}, "archive.flush_seconds", "one day"),
    ({"flush_seconds": "60"}, "archive.flush_seconds", "str"),
    ({"flush_seconds": True}, "archive.flush_seconds", "bool"),
])
def test_rejects_bad_archive(archive: object, path: str, word: str) -> None:
    rejects(path, lambda: meta(archive=archive), word)


PG = {"name": "pg", "kind": "postgres", "dsn_env": "PG_DSN", "table": "widgets"}


@pytest.mark.parametrize(("sinks", "path"), [
    ("postgres,mysql", "sinks"),
    ({"postgres": True}, "sinks"),
    (["postgres"], "sinks[0]"),
    ([{**PG, "name": ""}], "sinks[0].name"),
    ([{**PG, "name": "my sink"}], "sinks[0].name"),
    ([PG, PG], "sinks[1].name"),
    ([{**PG, "kind": "oracle"}], "sinks[0].kind"),
    ([{**PG, "dsn_env": "postgresql://u:pw@h/db"}], "sinks[0].dsn_env"),
    ([{**PG, "table": "a; drop table x"}], "sinks[0].table"),
    ([{k: v for k, v in PG.items() if k != "table"}], "sinks[0].table"),
    ([{**PG, "dsn": "postgresql://u:pw@h/db"}], "sinks[0].dsn"),
])
def test_rejects_bad_sinks(sinks: object, path: str) -> None:
    rejects(path, lambda: meta(key="widget_id", sinks=sinks), path)


def test_sinks_need_a_key() -> None:
    rejects("sinks", lambda: meta(sinks=[PG]), "no key")


def test_sinks_round_trip() -> None:
    parsed = meta(key="widget_id", sinks=[PG, {**PG, "name": "lite", "kind": "sqlite"}])
    assert parsed.sinks == (SinkSpec("pg", "postgres", "PG_DSN", "widgets"),
                            SinkSpec("lite", "sqlite", "PG_DSN", "widgets"))
    assert metadata_to_dict(parsed)["sinks"] == [PG, {**PG, "name": "lite", "kind": "sqlite"}]


# ------------------------------------------------------------ schema checks

KEY_OK = ["string", "int", "long", "boolean", "bytes",
          {"type": "enum", "name": "Color", "symbols": ["RED"]},
          {"type": "fixed", "name": "Id16", "size": 16},
          {"type": "string", "logicalType": "uuid"},
          {"type": "long", "logicalType": "timestamp-millis"},
          {"type": "int", "logicalType": "date"}]
KEY_BAD = [("float", "floating-point"), ("double", "floating-point"), ("null", "null"),
           (["null", "string"], "nullable"), (["string", "long"], "multi-type"),
           ({"type": "record", "name": "Part", "fields": []}, "scalar parts"),
           ({"type": "array", "items": "string"}, "scalar parts"),
           ({"type": "map", "values": "string"}, "scalar parts")]


def check(schema: AvroSchema, **data: Any) -> None:
    validate_against_schema(metadata_from_dict("widgets", data), schema)


def test_schema_must_be_a_record() -> None:
    for schema in (parse_schema('"string"'), parse_schema({"type": "array", "items": "long"})):
        rejects("schema", partial(validate_against_schema, meta(), schema), "Avro record")


@pytest.mark.parametrize("avro_type", KEY_OK)
def test_key_types_allowed(avro_type: object) -> None:
    check(record({"name": "id", "type": avro_type}), key="id")


@pytest.mark.parametrize(("avro_type", "why"), KEY_BAD)
def test_key_types_rejected(avro_type: object, why: str) -> None:
    schema = record({"name": "other", "type": "string"}, {"name": "id", "type": avro_type})
    rejects("key[1]", lambda: check(schema, key=["other", "id"]), "'id'", why,
            orjson.dumps(avro_type).decode()[:40])


def test_key_field_must_exist() -> None:
    rejects("key[0]", lambda: check(WIDGETS, key="sku"), "'sku'", "widget_id, version")


@pytest.mark.parametrize("avro_type", [
    "int", "long", {"type": "long", "logicalType": "timestamp-millis"}])
def test_max_order_types_allowed(avro_type: object) -> None:
    check(record({"name": "id", "type": "string"}, {"name": "v", "type": avro_type}),
          key="id", order={"rule": "max", "field": "v"})


@pytest.mark.parametrize("avro_type", ["string", "double", ["null", "long"],
                                       {"type": "map", "values": "long"}])
def test_max_order_types_rejected(avro_type: object) -> None:
    schema = record({"name": "id", "type": "string"}, {"name": "v", "type": avro_type})
    rejects("order.field", lambda: check(schema, key="id", order={"rule": "max", "field": "v"}),
            "'v'", "int or long")


def test_order_field_must_exist() -> None:
    rejects("order.field", lambda: check(WIDGETS, key="widget_id",
                                         order={"rule": "max", "field": "rev"}), "'rev'")


@pytest.mark.parametrize("avro_type", [{"type": "map", "values": "long"},
                                       {"type": "map", "values": {"type": "long"}}])
def test_vector_clock_types_allowed(avro_type: object) -> None:
    check(record({"name": "id", "type": "string"}, {"name": "c", "type": avro_type}),
          key="id", order={"rule": "vector_clock", "field": "c"})


@pytest.mark.parametrize("avro_type", [
    {"type": "map", "values": "int"}, ["null", {"type": "map", "values": "long"}], "long",
    {"type": "array", "items": "long"}])
def test_vector_clock_types_rejected(avro_type: object) -> None:
    schema = record({"name": "id", "type": "string"}, {"name": "c", "type": avro_type})
    rejects("order.field", lambda: check(schema, key="id",
                                         order={"rule": "vector_clock", "field": "c"}),
            "'c'", '"values": "long"')


def test_relations_are_checked_on_objects_built_directly() -> None:
    base = TopicMetadata("widgets", key=("widget_id",))
    for bad, path in [
        (dataclasses.replace(base, order=OrderRule("max", "widget_id")), "order.field"),
        (dataclasses.replace(base, order=OrderRule("first", "version")), "order.field"),
        (dataclasses.replace(base, order=OrderRule("max")), "order.field"),
        (dataclasses.replace(base, key=(), order=OrderRule("max", "version")), "order.rule"),
        (dataclasses.replace(base, key=(), checks=Checks(count_distinct=True)),
         "checks.count_distinct"),
    ]:
        rejects(path, partial(validate_against_schema, bad, WIDGETS))


@pytest.mark.parametrize("avro_type", [
    {"type": "long", "logicalType": "timestamp-millis"},
    {"type": "long", "logicalType": "timestamp-micros"},
    "long", {"type": "int", "logicalType": "date"}])
def test_partition_time_types_allowed(avro_type: object) -> None:
    check(record({"name": "ts", "type": avro_type}), partition_time="ts")


@pytest.mark.parametrize("avro_type", [
    "string", "int", "double", {"type": "long", "logicalType": "local-timestamp-millis"},
    {"type": "long", "logicalType": "time-micros"},
    ["null", {"type": "long", "logicalType": "timestamp-millis"}]])
def test_partition_time_types_rejected(avro_type: object) -> None:
    schema = record({"name": "ts", "type": avro_type})
    rejects("partition_time", lambda: check(schema, partition_time="ts"), "'ts'",
            "timestamp-millis")


def test_partition_time_kafka_and_missing_field() -> None:
    # `kafka` is the record timestamp even when a field has that name.
    check(record({"name": "kafka", "type": "string"}), partition_time="kafka")
    rejects("partition_time", lambda: check(WIDGETS, partition_time="created_at"),
            "'created_at'", "updated_at")


DECIMAL_BYTES = {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}
DECIMAL_FIXED = {"type": "fixed", "name": "Money", "size": 8, "logicalType": "decimal",
                 "precision": 12, "scale": 2}


@pytest.mark.parametrize("avro_type", ["int", "long", "float", "double",
                                       DECIMAL_BYTES, DECIMAL_FIXED])
def test_sum_types_allowed(avro_type: object) -> None:
    check(record({"name": "n", "type": avro_type}), checks={"sum": ["n"]})


@pytest.mark.parametrize("avro_type", ["string", "bytes", ["null", "double"], "boolean",
                                       {"type": "array", "items": "long"}])
def test_sum_types_rejected(avro_type: object) -> None:
    schema = record({"name": "a", "type": "long"}, {"name": "n", "type": avro_type})
    rejects("checks.sum[1]", lambda: check(schema, checks={"sum": ["a", "n"]}), "'n'", "decimal")


def test_sum_field_must_exist() -> None:
    rejects("checks.sum[0]", lambda: check(WIDGETS, checks={"sum": "cost"}), "'cost'")


# ------------------------------------------------- named types, namespaces


def test_named_types_are_resolved_by_reference() -> None:
    schema = record(
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED"]}},
        {"name": "paint", "type": "Color"},
        {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 16}},
        {"name": "copy", "type": "Hash"},
        {"name": "part", "type": {"type": "record", "name": "Part", "fields": []}},
        {"name": "spare", "type": "Part"},
        {"name": "cost", "type": DECIMAL_FIXED},
        {"name": "refund", "type": "Money"},
        namespace="com.acme",
    )
    check(schema, key=["paint", "copy"], checks={"sum": ["refund"]})
    error = rejects("key[0]", lambda: check(schema, key="spare"), "'spare'", "(a record)")
    assert '"Part"' in error.message


def test_names_defined_inside_unions_arrays_and_maps() -> None:
    schema = record(
        {"name": "a", "type": ["null", {"type": "enum", "name": "E1", "symbols": ["X"]}]},
        {"name": "b", "type": {"type": "array", "items": {"type": "fixed", "name": "F1",
                                                           "size": 2}}},
        {"name": "c", "type": {"type": "map", "values": {
            "type": "record", "name": "R1", "fields": [
                {"name": "d", "type": {"type": "enum", "name": "E2", "symbols": ["Y"]}}]}}},
        {"name": "e1", "type": "E1"}, {"name": "f1", "type": "F1"}, {"name": "e2", "type": "E2"},
    )
    check(schema, key=["e1", "f1", "e2"])


def test_namespaces_follow_avro_rules() -> None:
    schema = record(
        # com.acme.Kind, an enum: a fine key.
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A"]}},
        # other.Kind, a record: its own namespace, and a dotted name sets the namespace.
        {"name": "nested", "type": {"type": "record", "name": "Kind", "namespace": "other",
                                    "fields": [{"name": "z", "type": "long"}]}},
        {"name": "ver", "type": {"type": "fixed", "name": "x.y.Ver", "namespace": "ignored",
                                 "size": 8}},
        {"name": "short", "type": "Kind"},
        {"name": "full", "type": "com.acme.Kind"},
        {"name": "theirs", "type": "other.Kind"},
        {"name": "dotted", "type": "x.y.Ver"},
        namespace="com.acme",
    )
    check(schema, key=["short", "full", "dotted"])
    rejects("key[0]", lambda: check(schema, key="theirs"), "'theirs'", "(a record)")


def test_top_level_dotted_name_sets_the_namespace() -> None:
    schema = parse_schema({"type": "record", "name": "com.acme.Widget", "namespace": "ignored",
                           "fields": [{"name": "k", "type": {"type": "enum", "name": "K",
                                                             "symbols": ["A"]}},
                                      {"name": "ref", "type": "K"}]})
    validate_against_schema(meta(key="ref"), schema)


# ------------------------------------------------------------- round trip

_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
_name_lists = st.lists(_names, unique=True, max_size=4).map(tuple)


@st.composite
def topic_metadata(draw: st.DrawFn) -> TopicMetadata:
    key = draw(_name_lists)
    rule = draw(st.sampled_from(ORDER_RULES)) if key else "first"
    field = None if rule == "first" else draw(_names.filter(lambda n: n not in key))
    return TopicMetadata(
        topic=draw(st.from_regex(r"[A-Za-z0-9._-]{1,249}", fullmatch=True)
                   .filter(lambda t: t not in (".", ".."))),
        key=key,
        order=OrderRule(rule, field),  # type: ignore[arg-type]  # rule is drawn from ORDER_RULES
        partition_time=draw(st.one_of(st.just("kafka"), _names)),
        partitions=draw(st.integers(1, 10_000)),
        compatibility=draw(st.sampled_from([c.value for c in Compatibility])),
        checks=Checks(draw(st.booleans()) if key else False, draw(_name_lists),
                      draw(st.booleans())),
        archive=ArchivePolicy(
            draw(st.booleans()), draw(st.integers(1, 2**40)),
            draw(st.integers(1, MAX_FLUSH_BYTES)),
            draw(st.floats(0, 86_400, exclude_min=True, allow_nan=False))),
        sinks=tuple(SinkSpec(name, draw(st.sampled_from(SINK_KINDS)),
                             draw(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)),
                             draw(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)))
                    for name in (draw(st.lists(
                        st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True),
                        unique=True, max_size=3)) if key else [])),
    )


@settings(database=None, max_examples=300)
@given(topic_metadata())
def test_round_trip(original: TopicMetadata) -> None:
    as_dict = metadata_to_dict(original)
    assert "schema" not in as_dict
    assert metadata_from_dict(original.topic, as_dict) == original
    # The same through the two encodings it travels in: JSON (HTTP, registry log), YAML.
    assert metadata_from_dict(original.topic, orjson.loads(orjson.dumps(as_dict))) == original
    assert metadata_from_dict(original.topic, yaml.safe_load(yaml.safe_dump(as_dict))) == original


def test_canonical_form() -> None:
    parsed = metadata_from_dict("widgets", yaml.safe_load(DESIGN_EXAMPLE))
    assert metadata_to_dict(parsed) == {
        "topic": "widgets", "compatibility": "BACKWARD_TRANSITIVE", "partitions": 4,
        "key": ["widget_id"], "order": {"rule": "max", "field": "version"},
        "partition_time": "updated_at",
        "checks": {"count_distinct": "key", "sum": ["price"], "checksum": "row"},
        "archive": {"enabled": True, "flush_records": 10_000, "flush_bytes": 67_108_864,
                    "flush_seconds": 60.0},
        "sinks": [{"name": "widgets_pg", "kind": "postgres", "dsn_env": "WIDGETS_PG_DSN",
                   "table": "widgets"}],
    }
    assert metadata_to_dict(meta())["order"] == {"rule": "first"}
    assert metadata_to_dict(meta())["checks"] == {
        "count_distinct": False, "sum": [], "checksum": "row"}


# ------------------------------------------------------------- byte sizes


@pytest.mark.parametrize(("text", "size"), [
    ("64MiB", 64 * 1024**2), ("512KiB", 512 * 1024), ("1GiB", 1024**3), ("10MB", 10**7),
    ("100 B", 100), ("100", 100), (100, 100), (0, 0), ("2TiB", 2 * 1024**4), ("3kB", 3000),
    ("3KB", 3000), ("1.5GiB", 3 * 512 * 1024**2), ("0.1 GB", 10**8), (" 7 MiB ", 7 * 1024**2),
])
def test_byte_sizes(text: object, size: int) -> None:
    assert parse_byte_size(text) == size


@pytest.mark.parametrize("text", [
    "64 mb", "64Mb", "64mib", "1.5 B", "-1", "", "MiB", "64 MiBs", "1e6", "1,000", "64 M"])
def test_byte_size_text_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="byte"):
        parse_byte_size(text)


def test_byte_size_negative_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_byte_size(-1)


@pytest.mark.parametrize("value", [True, 1.5, None, b"64MiB"])
def test_byte_size_type_rejected(value: object) -> None:
    with pytest.raises(TypeError, match=type(value).__name__):
        parse_byte_size(value)


@settings(database=None)
@given(st.integers(0, 10**6), st.sampled_from(sorted(UNITS)), st.sampled_from(["", " "]))
def test_byte_size_units(number: int, unit: str, space: str) -> None:
    assert parse_byte_size(f"{number}{space}{unit}") == number * UNITS[unit]


@settings(database=None)
@given(st.decimals(0, 10**4, places=3), st.sampled_from(["KiB", "MiB", "kB", "MB"]))
def test_byte_size_decimals_are_exact(number: Decimal, unit: str) -> None:
    exact = number * UNITS[unit]
    text = f"{number}{unit}"
    if exact == exact.to_integral_value():
        assert parse_byte_size(text) == int(exact)
    else:
        with pytest.raises(ValueError, match="whole number"):
            parse_byte_size(text)
