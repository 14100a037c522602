"""``POST /topics/{topic}/records`` against a real broker: what lands in Kafka, and refusals.

Success cases read the topic back and check every Kafka record byte for byte (Confluent
framing, deterministic key, partition per key). Refusals check the exact status, the
stable ``code`` and the message, and that no partition's high watermark moved.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest
from aiokafka.partitioner import murmur2

from onepipe.schemas.codec import decode
from onepipe.sinks.publish.publisher import ENCODE_SLICE
from tests.fixtures.services import unique
from tests.fixtures.topics import (
    JSON_HEADERS,
    avro_string,
    create_topic,
    high_watermarks,
    read_topic,
)

if TYPE_CHECKING:
    from onepipe.app.runtime import Runtime
    from onepipe.app.settings import Settings

PARTITIONS = 3

ORDER_V1: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "namespace": "test.produce",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "version", "type": "long"},
        {"name": "qty", "type": "int"},
        {"name": "total", "type": "long"},
        {"name": "status", "type": {"type": "enum", "name": "Status",
                                    "symbols": ["NEW", "PAID", "SHIPPED"]}},
        {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
            {"name": "street", "type": "string"},
            {"name": "zip", "type": "int"},
        ]}},
        {"name": "items", "type": {"type": "array", "items": {
            "type": "record", "name": "Item", "fields": [
                {"name": "sku", "type": "string"},
                {"name": "price", "type": "double"},
            ]}}},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
#: v2 adds a field with a default: backward compatible, so it registers as version 2.
ORDER_V2: dict[str, Any] = {
    **ORDER_V1,
    "fields": [*ORDER_V1["fields"], {"name": "channel", "type": "string", "default": "web"}],
}
KEY = ["id"]
ORDER_RULE = {"rule": "max", "field": "version"}
CREATED = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
CREATED_MS = 1714564800123


def order(id_: str, version: Any = 1, **changes: Any) -> dict[str, Any]:
    """A valid v1 record; ``changes`` replace (or, with value ``...``, remove) fields."""
    record: dict[str, Any] = {
        "id": id_,
        "version": version,
        "qty": 2,
        "total": -(2**63),
        "status": "NEW",
        "created_at": "2024-05-01T12:00:00.123Z",
        "address": {"street": "1 Main St", "zip": 12345},
        "items": [{"sku": "a-1", "price": 9.5}, {"sku": "b-2", "price": 0.25}],
        "tags": ["x", "ü"],
        "note": "hello",
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not ...}


def expected_datum(record: dict[str, Any]) -> dict[str, Any]:
    """What fastavro reads back for a record sent as ``order(...)`` builds it."""
    out = dict(record)
    out["created_at"] = CREATED  # every form the tests send names this instant
    out.setdefault("tags", [])
    out.setdefault("note", None)
    if isinstance(out["note"], dict):  # the wrapped union form {"string": ...}
        out["note"] = out["note"]["string"]
    return out


async def post(http: aiohttp.ClientSession, topic: str, body: Any, query: str = "",
               content_type: str = "application/json") -> tuple[int, Any]:
    # json, not orjson: the tests send integers beyond 64 bits, which orjson cannot write.
    async with http.post(f"/topics/{topic}/records{query}", data=json.dumps(body).encode(),
                         headers={"Content-Type": content_type}) as resp:
        return resp.status, await resp.json()


def assert_error(status: int, body: Any, want_status: int, code: str, error_code: int,
                 *fragments: str) -> None:
    assert status == want_status, body
    assert isinstance(body, dict), body
    assert body["code"] == code, body
    assert body["error_code"] == error_code, body
    assert isinstance(body["message"], str)
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body["message"])


@pytest.fixture(scope="module")
async def orders(http: aiohttp.ClientSession, broker: str) -> AsyncIterator[str]:
    """A topic with one record in it, for the refusal tests (which must leave it unchanged)."""
    topic = unique("produce-bad")
    await create_topic(http, topic, ORDER_V1, partitions=PARTITIONS, key=KEY, order=ORDER_RULE)
    status, body = await post(http, topic, order("seed"))
    assert status == 200, body
    yield topic


# --- success ----------------------------------------------------------------------------


async def test_records_land_in_kafka_exactly_as_sent(
    http: aiohttp.ClientSession, runtime: Runtime, broker: str
) -> None:
    topic = unique("produce-ok")
    created = await create_topic(http, topic, ORDER_V1, partitions=PARTITIONS, key=KEY,
                                 order=ORDER_RULE)
    schema_id = created["id"]

    single = order("k0", created_at=CREATED_MS, note={"string": "wrapped"})
    batch = [
        order(f"k{i % 4}", version=i, qty=-(2**31) if i == 1 else 2**31 - 1,
              total=2**63 - 1 if i % 2 else -(2**63), status=["NEW", "PAID", "SHIPPED"][i % 3],
              created_at="2024-05-01T14:00:00.123+02:00" if i % 2 else CREATED_MS)
        for i in range(1, 13)
    ]
    batch[2] = order("k3", version=3, note=None, tags=..., items=[])
    batch[5] = order("k2", version=6, note=..., address={"street": "", "zip": 0})
    array = [order(f"other-{i}", version=i) for i in range(6)]

    sent: list[tuple[dict[str, Any], dict[str, int]]] = []
    status, reply = await post(http, topic, single)
    assert status == 200, reply
    assert reply["topic"] == topic
    assert (reply["value_schema_id"], reply["version"]) == (schema_id, 1)
    assert len(reply["offsets"]) == 1
    sent.append((single, reply["offsets"][0]))
    for body, records, ctype in (({"records": batch}, batch, "application/json"),
                                 (array, array, "application/json; charset=utf-8")):
        status, reply = await post(http, topic, body, content_type=ctype)
        assert status == 200, reply
        assert (reply["value_schema_id"], reply["version"]) == (schema_id, 1)
        assert len(reply["offsets"]) == len(records)
        sent.extend(zip(records, reply["offsets"], strict=True))

    # Request order: within a partition, offsets grow in the order records were sent.
    last: dict[int, int] = {}
    for _, where in sent:
        assert set(where) == {"partition", "offset"}
        assert 0 <= where["partition"] < PARTITIONS
        assert where["offset"] > last.get(where["partition"], -1)
        last[where["partition"]] = where["offset"]

    in_kafka, watermarks = await read_topic(broker, topic, PARTITIONS)
    assert sum(len(r) for r in in_kafka.values()) == len(sent) == sum(watermarks.values())
    by_coords = {(p, r.offset): r for p, rs in in_kafka.items() for r in rs}
    partition_of_key: dict[str, int] = {}
    for record, where in sent:
        kafka = by_coords[(where["partition"], where["offset"])]
        value = kafka.value
        assert value[0] == 0
        assert int.from_bytes(value[1:5], "big") == schema_id
        got_id, datum = decode(value, runtime.registry.state.schema_by_id)
        assert got_id == schema_id
        assert datum == expected_datum(record)
        assert datum["created_at"].timestamp() * 1000 == pytest.approx(CREATED_MS, abs=0.5)
        # The key is the Avro encoding of the key fields alone, no framing.
        assert kafka.key == avro_string(record["id"])
        # Every version of a key in one partition: the one murmur2 picks for its key bytes.
        assert partition_of_key.setdefault(record["id"], where["partition"]) == where["partition"]
        assert where["partition"] == (murmur2(kafka.key) & 0x7FFFFFFF) % PARTITIONS
    assert len(set(partition_of_key.values())) > 1, "keys should spread over partitions"
    assert len([r for r, _ in sent if r["id"] == "k1"]) >= 3


async def test_version_selects_the_writer_schema(
    http: aiohttp.ClientSession, runtime: Runtime, broker: str
) -> None:
    topic = unique("produce-ver")
    v1 = await create_topic(http, topic, ORDER_V1, partitions=PARTITIONS, key=KEY,
                            order=ORDER_RULE)
    v2 = await create_topic(http, topic, ORDER_V2, partitions=PARTITIONS, key=KEY,
                            order=ORDER_RULE)
    assert (v1["version"], v2["version"]) == (1, 2)
    assert v1["id"] != v2["id"]

    cases = [
        ("", [order("a", channel="app")], v2),
        ("?version=latest", [order("b")], v2),
        ("?version=2", [order("c")], v2),
        ("?version=1", [order("d")], v1),
    ]
    produced: dict[tuple[int, int], int] = {}
    for query, records, want in cases:
        status, reply = await post(http, topic, {"records": records}, query)
        assert status == 200, (query, reply)
        assert (reply["value_schema_id"], reply["version"]) == (want["id"], want["version"])
        for where in reply["offsets"]:
            produced[(where["partition"], where["offset"])] = want["id"]
    status, reply = await post(http, topic, {"records": [order("e")], "version": 1})
    assert status == 200, reply
    assert reply["value_schema_id"] == v1["id"]
    produced[(reply["offsets"][0]["partition"], reply["offsets"][0]["offset"])] = v1["id"]

    watermarks = await high_watermarks(broker, topic, PARTITIONS)
    status, body = await post(http, topic, [order("f", channel="app")], "?version=1")
    assert_error(status, body, 422, "invalid_records", 42210, "nothing was produced")
    assert body["errors"] == [{"index": 0, "path": "",
                               "reason": body["errors"][0]["reason"]}]
    assert "unknown field 'channel'" in body["errors"][0]["reason"]
    status, body = await post(http, topic, [order("g")], "?version=3")
    assert_error(status, body, 404, "not_found", 40402, "version 3", f"{topic}-value")
    for bad in ("abc", "0", "1.5", "99999999999"):
        status, body = await post(http, topic, [order("h")], f"?version={bad}")
        assert_error(status, body, 422, "invalid_version", 42202, repr(bad), "'latest'")
    status, body = await post(http, topic, {"records": [order("i")], "version": True})
    assert_error(status, body, 422, "invalid_version", 42202, "True")
    assert await high_watermarks(broker, topic, PARTITIONS) == watermarks

    in_kafka, _ = await read_topic(broker, topic, PARTITIONS)
    state = runtime.registry.state
    reader_v2 = state.schema_by_id(v2["id"])
    seen = {}
    for partition, rs in in_kafka.items():
        for r in rs:
            schema_id, datum = decode(r.value, state.schema_by_id)
            assert schema_id == produced[(partition, r.offset)]
            assert ("channel" in datum) == (schema_id == v2["id"])
            _, as_v2 = decode(r.value, state.schema_by_id, reader=reader_v2)
            seen[as_v2["id"]] = as_v2["channel"]
    assert seen == {"a": "app", "b": "web", "c": "web", "d": "web", "e": "web"}


async def test_integers_beyond_64_bits_keep_every_digit(
    http: aiohttp.ClientSession, runtime: Runtime, broker: str
) -> None:
    """A JSON parser that reads big integers as floats would store a decimal wrong."""
    topic = unique("produce-bigint")
    schema = {"type": "record", "name": "Money", "fields": [
        {"name": "id", "type": "string"},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal",
                                    "precision": 40, "scale": 2}},
    ]}
    await create_topic(http, topic, schema, partitions=1, key=["id"])
    amounts = [12345678901234567890123456789, -9223372036854775809, 18446744073709551616,
               2**64 - 1, 7]
    status, reply = await post(http, topic, [{"id": str(i), "amount": a}
                                             for i, a in enumerate(amounts)])
    assert status == 200, reply
    in_kafka, _ = await read_topic(broker, topic, 1)
    decoded = [decode(r.value, runtime.registry.state.schema_by_id)[1] for r in in_kafka[0]]
    assert [d["amount"] for d in decoded] == [Decimal(a) for a in amounts]
    assert [str(d["amount"]) for d in decoded][0] == "12345678901234567890123456789.00"


# --- refusals: nothing is produced ------------------------------------------------------


async def test_one_bad_record_rejects_the_request_with_every_error(
    http: aiohttp.ClientSession, broker: str, orders: str
) -> None:
    before = await high_watermarks(broker, orders, PARTITIONS)
    records = [
        order("ok-0"),
        order("bad-1", qty="three"),
        order("ok-2"),
        order("bad-3", version=...),
        order("bad-4", colour="red"),
        order("bad-5", qty=2**31),
        order("bad-6", total=2**64),  # beyond 64 bits: orjson refuses, the fallback parses
        order("bad-7", total=2**63),  # fits u64, so orjson parses it; still not a long
        order("bad-8", status="LOST"),
        order("bad-9", address={"street": "x", "zip": "abc"}),
        order("bad-10", items=[{"sku": "a", "price": 1.0}, {"sku": "b", "price": "free"}]),
        order("bad-11", tags=["a", 5]),
        order("bad-12", created_at="2024-05-01T12:00:00"),
        order("bad-13", address={"street": "x", "zip": 1, "city": "y"}, qty=None),
    ]
    status, body = await post(http, orders, {"records": records})
    assert_error(status, body, 422, "invalid_records", 42210, "nothing was produced",
                 "[1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]")
    errors = {(e["index"], e["path"]): e["reason"] for e in body["errors"]}
    assert len(errors) == len(body["errors"]), body["errors"]
    expected = {
        (1, "qty"): ["int (32-bit)", "string 'three'"],
        (3, "version"): ["required field missing"],
        (4, ""): ["unknown field 'colour'", "id, version, qty"],
        (5, "qty"): ["int (32-bit)", "2147483648", "out of range"],
        (6, "total"): ["long (64-bit)", "18446744073709551616", "out of range"],
        (7, "total"): ["long (64-bit)", "9223372036854775808", "out of range"],
        (8, "status"): ["'LOST'", "NEW, PAID, SHIPPED"],
        (9, "address.zip"): ["int (32-bit)", "string 'abc'"],
        (10, "items[1].price"): ["double", "string 'free'"],
        (11, "tags[1]"): ["string", "int 5"],
        (12, "created_at"): ["timestamp-millis", "no timezone offset"],
        (13, "qty"): ["int (32-bit)", "null"],
        (13, "address"): ["unknown field 'city'"],
    }
    assert set(errors) == set(expected), body["errors"]
    for where, fragments in expected.items():
        for fragment in fragments:
            assert fragment in errors[where], (where, fragment, errors[where])
    assert await high_watermarks(broker, orders, PARTITIONS) == before


async def test_errors_in_later_slices_carry_their_own_index(
    http: aiohttp.ClientSession, broker: str, orders: str
) -> None:
    # Records are validated ENCODE_SLICE at a time: an error's index is the record's in
    # the request, not in its slice.
    before = await high_watermarks(broker, orders, PARTITIONS)
    bad = {ENCODE_SLICE - 1: "x", ENCODE_SLICE: "y", 2 * ENCODE_SLICE + 49: "z"}
    records = [order(f"s-{i}", qty=bad[i]) if i in bad else order(f"s-{i}")
               for i in range(3 * ENCODE_SLICE + 50)]
    status, body = await post(http, orders, {"records": records})
    assert status == 422, body
    assert [(e["index"], e["path"]) for e in body["errors"]] == [
        (index, "qty") for index in sorted(bad)]
    assert await high_watermarks(broker, orders, PARTITIONS) == before


def _chunks(data: bytes, size: int = 512) -> Callable[[], AsyncIterator[bytes]]:
    async def gen() -> AsyncIterator[bytes]:
        for start in range(0, len(data), size):
            yield data[start:start + size]

    return gen


BAD_REQUESTS: list[tuple[str, bytes, dict[str, str] | None, int, str, int, list[str]]] = [
    # (id, body, headers (None: no Content-Type at all), status, code, error_code, fragments)
    ("malformed-json", b'{"id": "x", ', JSON_HEADERS, 400, "malformed_json", 400,
     ["not valid JSON"]),
    ("trailing-garbage", b'{"id": "x"} {}', JSON_HEADERS, 400, "malformed_json", 400,
     ["not valid JSON"]),
    ("nan", b'{"id": NaN}', JSON_HEADERS, 400, "malformed_json", 400, ["not valid JSON"]),
    ("text-plain", orjson.dumps(order("x")), {"Content-Type": "text/plain"}, 415,
     "unsupported_media_type", 415, ["'text/plain'", "application/json"]),
    ("form", b"id=x", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
     "unsupported_media_type", 415, ["x-www-form-urlencoded"]),
    ("no-content-type", orjson.dumps(order("x")), None, 415, "unsupported_media_type", 415,
     ["(none)", "application/json"]),
    ("empty", b"", JSON_HEADERS, 400, "empty_body", 400, ["empty"]),
    ("blank", b" \n\t ", JSON_HEADERS, 400, "empty_body", 400, ["empty"]),
    ("empty-records", b'{"records": []}', JSON_HEADERS, 422, "invalid_body", 422,
     ["no records"]),
    ("empty-array", b"[]", JSON_HEADERS, 422, "invalid_body", 422, ["no records"]),
    ("string", b'"hello"', JSON_HEADERS, 422, "invalid_body", 422, ["got str"]),
    ("number", b"42", JSON_HEADERS, 422, "invalid_body", 422, ["got int"]),
    ("float", b"4.5e300", JSON_HEADERS, 422, "invalid_body", 422, ["got float"]),
    ("null", b"null", JSON_HEADERS, 422, "invalid_body", 422, ["got NoneType"]),
    ("bool", b"true", JSON_HEADERS, 422, "invalid_body", 422, ["got bool"]),
]


@pytest.mark.parametrize(
    ("body", "headers", "status", "code", "error_code", "fragments"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS],
)
async def test_bad_requests_are_refused_and_produce_nothing(
    http: aiohttp.ClientSession, broker: str, orders: str, body: bytes,
    headers: dict[str, str] | None, status: int, code: str, error_code: int,
    fragments: list[str],
) -> None:
    before = await high_watermarks(broker, orders, PARTITIONS)
    skip = ["Content-Type"] if headers is None else []
    async with http.post(f"/topics/{orders}/records", data=body, headers=headers or {},
                         skip_auto_headers=skip) as resp:
        got_status, got = resp.status, await resp.json()
    assert_error(got_status, got, status, code, error_code, *fragments)
    assert await high_watermarks(broker, orders, PARTITIONS) == before


async def test_unknown_topic_is_404_whatever_the_body(http: aiohttp.ClientSession) -> None:
    topic = unique("never-registered")
    for body, headers in ((orjson.dumps(order("x")), JSON_HEADERS),
                          (b"not json", {"Content-Type": "text/plain"})):
        async with http.post(f"/topics/{topic}/records", data=body, headers=headers) as resp:
            status, got = resp.status, await resp.json()
        assert_error(status, got, 404, "not_found", 40410, repr(topic), "PUT /topics/")


async def test_request_limits(
    make_settings: Callable[..., Settings], runtime: Runtime, broker: str, orders: str
) -> None:
    from onepipe.app.runtime import Runtime  # noqa: PLC0415 - as in the fixtures module

    limit = 2048
    settings = make_settings(max_request_bytes=limit, max_records_per_request=3,
                             registry_topic=runtime.settings.registry_topic)
    async with Runtime(settings) as small, aiohttp.ClientSession(
        base_url=f"http://127.0.0.1:{small.web.port}"
    ) as client:
        url = f"/topics/{orders}/records"
        before = await high_watermarks(broker, orders, PARTITIONS)

        one = orjson.dumps(order("limit-ok"))
        exact = one + b" " * (limit - len(one))  # exactly at the limit: accepted
        async with client.post(url, data=exact, headers=JSON_HEADERS) as resp:
            assert resp.status == 200, await resp.text()
            accepted = (await resp.json())["offsets"][0]

        big = orjson.dumps({"records": [order(f"big-{i}") for i in range(3)]})
        big += b" " * max(0, limit + 1 - len(big))
        assert len(big) > limit
        async with client.post(url, data=big, headers=JSON_HEADERS) as resp:
            status, body = resp.status, await resp.json()
        assert_error(status, body, 413, "payload_too_large", 413, f"{len(big)} bytes",
                     f"limit of {limit} bytes")
        # Without a Content-Length (chunked), the limit is found while reading.
        async with client.post(url, data=_chunks(big)(), headers=JSON_HEADERS) as resp:
            status, body = resp.status, await resp.json()
        assert_error(status, body, 413, "payload_too_large", 413, f"limit of {limit} bytes")

        four = orjson.dumps([{"id": str(i)} for i in range(4)])
        async with client.post(url, data=four, headers=JSON_HEADERS) as resp:
            status, body = resp.status, await resp.json()
        assert_error(status, body, 413, "too_many_records", 413, "4 records", "limit is 3")

        after = await high_watermarks(broker, orders, PARTITIONS)
        assert after[accepted["partition"]] == before[accepted["partition"]] + 1
        assert sum(after.values()) == sum(before.values()) + 1
