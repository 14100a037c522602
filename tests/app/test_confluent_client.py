"""Confluent's own Python client against onepipe's registry, unchanged (DESIGN.md).

``confluent_kafka.schema_registry.SchemaRegistryClient`` with its ``AvroSerializer`` and
``AvroDeserializer`` talks to the shared worker's HTTP API; the framed bytes travel
through the tansu broker with confluent_kafka's own producer and consumer. The client's
delete, mode, normalize and by-id calls run unchanged too, errors included.

confluent_kafka is synchronous, and the HTTP server runs on this test's event loop, so
every blocking call runs in a thread (``asyncio.to_thread``); on the loop thread it would
deadlock waiting for a server that cannot answer.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from onepipe.app.runtime import Runtime
from tests.fixtures.services import unique

V1: dict[str, Any] = {
    "type": "record", "name": "Order", "namespace": "shop",
    "fields": [{"name": "order_id", "type": "string"},
               {"name": "version", "type": "long"},
               {"name": "amount", "type": "double"}],
}
V2: dict[str, Any] = {**V1, "fields": [*V1["fields"],
                                       {"name": "note", "type": ["null", "string"],
                                        "default": None}]}
#: Adds a required field: cannot read V1/V2 data, so BACKWARD* refuses it.
BREAKING: dict[str, Any] = {**V1, "fields": [*V1["fields"],
                                             {"name": "required", "type": "string"}]}


@pytest.fixture
def client(runtime: Runtime) -> Iterator[SchemaRegistryClient]:
    registry = SchemaRegistryClient({"url": f"http://127.0.0.1:{runtime.web.port}"})
    yield registry
    registry.close()


def avro(schema: dict[str, Any]) -> Schema:
    return Schema(json.dumps(schema), "AVRO")


async def test_serialize_produce_consume_deserialize(
        client: SchemaRegistryClient, broker: str, http: aiohttp.ClientSession) -> None:
    topic = unique("orders")
    # The topic is declared through onepipe's catalog (schema V1); the client evolves it.
    async with http.put(f"/topics/{topic}/metadata", json={
            "schema": V1, "key": ["order_id"], "order": {"rule": "max", "field": "version"},
            "partitions": 1}) as resp:
        assert resp.status == 200, await resp.text()
        v1_id = (await resp.json())["id"]

    serializer = AvroSerializer(client, json.dumps(V2), conf={"auto.register.schemas": True})
    deserializer = AvroDeserializer(client)
    ctx = SerializationContext(topic, MessageField.VALUE)
    records = [{"order_id": f"o-{i}", "version": i, "amount": i * 1.25,
                "note": None if i % 2 else f"note {i}"} for i in range(10)]
    payloads = await asyncio.to_thread(lambda: [serializer(r, ctx) for r in records])

    # Registered as version 2 of the topic's value subject; framed with its id.
    latest = await asyncio.to_thread(client.get_latest_version, f"{topic}-value")
    assert latest.version == 2 and latest.schema_id != v1_id
    assert json.loads(latest.schema.schema_str or "") == V2
    for payload in payloads:
        assert payload[0] == 0
        assert struct.unpack(">I", payload[1:5])[0] == latest.schema_id

    errors: list[KafkaError] = []

    def produce() -> int:
        producer = Producer({"bootstrap.servers": broker, "enable.idempotence": False,
                             "acks": "all"})

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)

        for record, payload in zip(records, payloads, strict=True):
            producer.produce(topic, value=payload, key=str(record["order_id"]).encode(),
                             on_delivery=delivered)
        return producer.flush(20)

    assert await asyncio.to_thread(produce) == 0, "messages left undelivered"
    assert errors == []

    def consume() -> list[bytes]:
        consumer = Consumer({"bootstrap.servers": broker, "group.id": unique("cg"),
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        try:
            # Assigned, not subscribed: no group join (tansu holds joins for seconds).
            consumer.assign([TopicPartition(topic, 0)])
            values: list[bytes] = []
            deadline = time.monotonic() + 20
            while len(values) < len(records) and time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                assert msg.error() is None, msg.error()
                value = msg.value()
                assert isinstance(value, bytes)
                values.append(value)
            return values
        finally:
            consumer.close()

    consumed = await asyncio.to_thread(consume)
    assert consumed == payloads
    decoded = await asyncio.to_thread(lambda: [deserializer(v, ctx) for v in consumed])
    assert decoded == records

    # Data written with V1's id decodes with the deserializer too (it fetches by id).
    v1_serializer = AvroSerializer(client, json.dumps(V1),
                                   conf={"auto.register.schemas": False})
    old = {"order_id": "o-old", "version": 1, "amount": 2.5}
    old_bytes = await asyncio.to_thread(v1_serializer, old, ctx)
    assert struct.unpack(">I", old_bytes[1:5])[0] == v1_id
    assert await asyncio.to_thread(deserializer, old_bytes, ctx) == old


async def test_registry_calls(client: SchemaRegistryClient) -> None:
    subject = unique("client-value")

    def calls() -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["id1"] = client.register_schema(subject, avro(V1))
        out["id2"] = client.register_schema(subject, avro(V2))
        out["again"] = client.register_schema(subject, avro(V1))
        out["latest"] = client.get_latest_version(subject)
        out["v1"] = client.get_version(subject, 1)
        out["versions"] = client.get_versions(subject)
        out["subjects"] = client.get_subjects()
        out["lookup"] = client.lookup_schema(subject, avro(V1))
        out["by_id"] = client.get_schema(out["id2"])
        out["compatible"] = client.test_compatibility(subject, avro(V2))
        out["breaking"] = client.test_compatibility(subject, avro(BREAKING))
        out["breaking_v1"] = client.test_compatibility(subject, avro(BREAKING), version=1)
        out["set"] = client.set_compatibility(subject_name=subject, level="full")
        out["get"] = client.get_compatibility(subject)
        out["global"] = client.get_compatibility()
        return out

    got = await asyncio.to_thread(calls)
    assert got["id1"] != got["id2"]
    assert got["again"] == got["id1"]
    assert (got["latest"].subject, got["latest"].version, got["latest"].schema_id) == (
        subject, 2, got["id2"])
    assert json.loads(got["latest"].schema.schema_str) == V2
    assert (got["v1"].version, got["v1"].schema_id) == (1, got["id1"])
    assert got["versions"] == [1, 2]
    assert subject in got["subjects"]
    assert (got["lookup"].version, got["lookup"].schema_id) == (1, got["id1"])
    assert json.loads(got["by_id"].schema_str) == V2
    assert got["compatible"] is True
    assert got["breaking"] is False
    assert got["breaking_v1"] is False
    assert got["set"] == {"compatibility": "FULL"}
    assert got["get"] == "FULL"
    assert got["global"] in {"BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD",
                             "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE"}


async def test_client_errors(client: SchemaRegistryClient) -> None:
    subject = unique("client-value")
    await asyncio.to_thread(client.register_schema, subject, avro(V1))

    with pytest.raises(SchemaRegistryError) as incompatible:
        await asyncio.to_thread(client.register_schema, subject, avro(BREAKING))
    assert (incompatible.value.http_status_code, incompatible.value.error_code) == (409, 409)
    assert await asyncio.to_thread(client.get_versions, subject) == [1]

    with pytest.raises(SchemaRegistryError) as unknown:
        await asyncio.to_thread(client.get_latest_version, unique("missing-value"))
    assert (unknown.value.http_status_code, unknown.value.error_code) == (404, 40401)

    with pytest.raises(SchemaRegistryError) as not_under:
        await asyncio.to_thread(client.lookup_schema, subject, avro(V2))
    assert (not_under.value.http_status_code, not_under.value.error_code) == (404, 40403)

    with pytest.raises(SchemaRegistryError) as invalid:
        await asyncio.to_thread(client.register_schema, subject,
                                Schema('{"type": "record", "name": "X"}', "AVRO"))
    assert (invalid.value.http_status_code, invalid.value.error_code) == (422, 42201)

    with pytest.raises(SchemaRegistryError) as level:
        await asyncio.to_thread(client.set_compatibility, subject, "SIDEWAYS")
    assert level.value.error_code == 42203


async def test_deletes_modes_and_lookups_through_the_client(client: SchemaRegistryClient) -> None:
    subject = unique("client-value")
    # A namespace of its own, so the ids are this test's alone.
    namespace = unique("shop").replace("-", "_")
    v1, v2 = {**V1, "namespace": namespace}, {**V2, "namespace": namespace}

    def calls() -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["id1"] = client.register_schema(subject, avro(v1))
        out["id2"] = client.register_schema(subject, avro(v2), normalize_schemas=True)
        respelled = {**v1, "name": f"{namespace}.Order"}
        del respelled["namespace"]
        out["normalized"] = client.lookup_schema(subject, avro(respelled),
                                                 normalize_schemas=True)
        out["by_id_subjects"] = client.get_subjects_by_schema_id(out["id1"])
        out["by_id_versions"] = client.get_schema_versions(out["id1"])
        out["referenced_by"] = client.get_referenced_by(subject, 1)
        out["deleted_version"] = client.delete_version(subject, 2)
        out["versions_after"] = client.get_versions(subject)
        out["versions_deleted"] = client.get_versions(subject, deleted=True)
        out["deleted_v2"] = client.get_version(subject, 2, deleted=True)
        out["latest"] = client.get_latest_version(subject)
        out["hard_version"] = client.delete_version(subject, 2, permanent=True)
        out["set"] = client.set_compatibility(subject_name=subject, level="FORWARD")
        out["mode_set"] = client.update_mode(subject, "READONLY")
        out["mode"] = client.get_mode(subject)
        out["global_mode"] = client.get_global_mode()
        try:
            client.delete_subject(subject)
        except SchemaRegistryError as exc:
            out["read_only"] = exc
        out["mode_deleted"] = client.delete_mode(subject)
        out["soft"] = client.delete_subject(subject)
        out["subjects"] = client.get_subjects()
        out["subjects_deleted"] = client.get_subjects(deleted=True)
        out["hard"] = client.delete_subject(subject, permanent=True)
        out["schema_after"] = client.get_schema(out["id1"])
        return out

    got = await asyncio.to_thread(calls)
    assert got["id1"] != got["id2"]
    assert (got["normalized"].version, got["normalized"].schema_id) == (1, got["id1"])
    assert got["by_id_subjects"] == [subject]
    assert [(v.subject, v.version) for v in got["by_id_versions"]] == [(subject, 1)]
    assert got["referenced_by"] == []
    assert got["deleted_version"] == 2
    assert (got["versions_after"], got["versions_deleted"]) == ([1], [1, 2])
    assert got["deleted_v2"].schema_id == got["id2"]
    assert (got["latest"].version, got["latest"].schema_id) == (1, got["id1"])
    assert got["hard_version"] == 2
    assert got["set"] == {"compatibility": "FORWARD"}
    assert (got["mode_set"], got["mode"], got["global_mode"]) == (
        "READONLY", "READONLY", "READWRITE")
    assert (got["read_only"].http_status_code, got["read_only"].error_code) == (422, 42205)
    assert got["mode_deleted"] == "READONLY"
    assert got["soft"] == [1]
    assert subject not in got["subjects"] and subject in got["subjects_deleted"]
    assert got["hard"] == [1]
    # The id outlives every version that held it: data written with it stays decodable.
    assert json.loads(got["schema_after"].schema_str) == v1


async def test_client_delete_errors(client: SchemaRegistryClient) -> None:
    subject = unique("client-value")
    await asyncio.to_thread(client.register_schema, subject, avro(V1))
    with pytest.raises(SchemaRegistryError) as not_soft:
        await asyncio.to_thread(client.delete_subject, subject, True)
    assert (not_soft.value.http_status_code, not_soft.value.error_code) == (404, 40405)
    with pytest.raises(SchemaRegistryError) as version_not_soft:
        await asyncio.to_thread(client.delete_version, subject, 1, True)
    assert version_not_soft.value.error_code == 40407
    with pytest.raises(SchemaRegistryError) as mode:
        await asyncio.to_thread(client.update_mode, subject, "IMPORT")
    assert (mode.value.http_status_code, mode.value.error_code) == (422, 42204)
