"""The produce endpoint's batch path (onepipe.schemas.avro_batch_write) against a real broker.

A request of at least ``MIN_RECORDS`` records of a flat schema is validated and encoded
column by column; what lands in Kafka must be byte for byte what the per-record path
(the topic's converter, ``encode_many`` and the key encoder) makes of the same records,
and a bad record among them must get the per-record path's 422 and produce nothing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import aiohttp

from onepipe.schemas.avro_batch_write import MIN_RECORDS
from onepipe.schemas.codec import KeyEncoder
from onepipe.schemas.validation import compile_converter
from onepipe.sinks.publish.publisher import TopicWriter
from tests.fixtures.services import unique
from tests.fixtures.topics import create_topic, high_watermarks, read_topic

if TYPE_CHECKING:
    from onepipe.app.runtime import Runtime

PARTITIONS = 3
FLAT: dict[str, Any] = {
    "type": "record", "name": "Reading", "namespace": "test.batch",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "version", "type": "long"},
        {"name": "qty", "type": "int"},
        {"name": "price", "type": "double"},
        {"name": "ok", "type": "boolean"},
        {"name": "status", "type": {"type": "enum", "name": "State",
                                    "symbols": ["NEW", "PAID", "SHIPPED"]}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
    ],
}


def reading(i: int) -> dict[str, Any]:
    return {"id": f"r-{i % 50}", "version": i, "qty": -(2**31) if i % 7 == 0 else i,
            "price": i / 3, "ok": i % 2 == 0, "status": ["NEW", "PAID", "SHIPPED"][i % 3],
            "at": 1_714_564_800_123 + i, "note": None if i % 4 else f"note ü {i}",
            "tags": [f"t{j}" for j in range(i % 3)]}


async def post(http: aiohttp.ClientSession, topic: str, records: list[Any]) -> tuple[int, Any]:
    async with http.post(f"/topics/{topic}/records", data=json.dumps({"records": records}),
                         headers={"Content-Type": "application/json"}) as resp:
        return resp.status, await resp.json()


async def test_a_batch_lands_as_the_per_record_path_encodes_it(
        http: aiohttp.ClientSession, runtime: Runtime, broker: str) -> None:
    topic = unique("produce-columns")
    created = await create_topic(http, topic, FLAT, partitions=PARTITIONS, key=["id"])
    writer = runtime.context.publisher.writer(topic)
    records = [reading(i) for i in range(3 * MIN_RECORDS)]
    # The schema and these records are ones the batch path takes (else this would test
    # the per-record path twice).
    assert writer.columns is not None and writer.columns.encode(records) is not None

    status, reply = await post(http, topic, records)
    assert status == 200, reply
    reference = TopicWriter(topic, created["id"], 1, writer.schema,
                            compile_converter(writer.schema), KeyEncoder(writer.schema, ["id"]))
    expected = reference.encode(records)
    in_kafka, _ = await read_topic(broker, topic, PARTITIONS)
    by_coords = {(p, r.offset): r for p, rs in in_kafka.items() for r in rs}
    assert len(by_coords) == len(records)
    for (key, value), where in zip(expected, reply["offsets"], strict=True):
        landed = by_coords[(where["partition"], where["offset"])]
        assert (landed.key, landed.value) == (key, value)


async def test_a_bad_record_in_a_batch_gets_the_per_record_refusal(
        http: aiohttp.ClientSession, runtime: Runtime, broker: str) -> None:
    topic = unique("produce-columns-bad")
    await create_topic(http, topic, FLAT, partitions=PARTITIONS, key=["id"])
    records = [reading(i) for i in range(2 * MIN_RECORDS)]
    records[MIN_RECORDS + 1]["qty"] = 2**31  # one past an int
    records[MIN_RECORDS + 2]["price"] = 1  # an int where the schema says double: taken...
    before = await high_watermarks(broker, topic, PARTITIONS)

    status, body = await post(http, topic, records)
    assert status == 422, body
    # ...by the per-record path, as before: only the int out of range is an error.
    assert [(e["index"], e["path"]) for e in body["errors"]] == [(MIN_RECORDS + 1, "qty")]
    assert await high_watermarks(broker, topic, PARTITIONS) == before
