"""Confluent REST Proxy v3 produce (``/v3/clusters/{id}/topics/{t}/records``) on a real broker.

Requests are plain HTTP shaped as Confluent documents them (the examples of the
``ProduceRequest`` body in kafka-rest's ``api/v3/openapi.yaml``, the source of the
"Produce Records" page of docs.confluent.io, Kafka REST API v3); what lands in Kafka is
read back group-less (``assign``) and checked: value framing and schema id, the derived
key, headers, timestamps, each record exactly once.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest
from aiokafka.partitioner import murmur2

from onepipe.app.web.json_stream import Document, JsonObjectSplitter, ObjectTooLarge
from onepipe.schemas.codec import decode
from tests.fixtures.services import unique
from tests.fixtures.topics import avro_string, create_topic, high_watermarks, read_topic

if TYPE_CHECKING:
    from onepipe.app.runtime import Runtime

PARTITIONS = 3
WIDGET_V1: dict[str, Any] = {
    "type": "record", "name": "Widget", "namespace": "test.v3",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "version", "type": "long"},
        {"name": "qty", "type": "int"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
WIDGET_V2: dict[str, Any] = {
    **WIDGET_V1,
    "fields": [*WIDGET_V1["fields"], {"name": "colour", "type": "string", "default": "red"}],
}
JSON = {"Content-Type": "application/json"}


def widget(id_: str, version: int = 1, **changes: Any) -> dict[str, Any]:
    return {"id": id_, "version": version, "qty": 2, "note": None, **changes}


def key_of(id_: str) -> bytes:
    return avro_string(id_)


def partition_of(id_: str) -> int:
    return (murmur2(key_of(id_)) & 0x7FFFFFFF) % PARTITIONS


@pytest.fixture(scope="module")
async def cluster_id(http: aiohttp.ClientSession) -> str:
    async with http.get("/v3/clusters") as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    assert body["kind"] == "KafkaClusterList"
    assert len(body["data"]) == 1
    found: str = body["data"][0]["cluster_id"]
    return found


@pytest.fixture(scope="module")
async def widgets(http: aiohttp.ClientSession) -> dict[str, Any]:
    """A topic with two schema versions: its name and both registrations."""
    topic = unique("v3-widgets")
    v1 = await create_topic(http, topic, WIDGET_V1, partitions=PARTITIONS, key=["id"])
    v2 = await create_topic(http, topic, WIDGET_V2, partitions=PARTITIONS, key=["id"])
    return {"topic": topic, "v1": v1, "v2": v2}


async def post(http: aiohttp.ClientSession, cluster: str, topic: str, body: Any,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with http.post(f"/v3/clusters/{cluster}/topics/{topic}/records",
                         data=json.dumps(body).encode(), headers=headers or JSON) as resp:
        return resp.status, await resp.json()


def assert_error(status: int, body: Any, want: int, error_code: int, code: str,
                 *fragments: str) -> None:
    assert (status, body["error_code"], body["code"]) == (want, error_code, code), body
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body["message"])


# --- the JSON stream splitter, alone ------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 3, 64, 100_000])
def test_splitter_finds_objects_split_anywhere(chunk: int) -> None:
    docs = [{"value": {"data": {"id": f'k{i}"}}{{\\', "n": [1, {"x": "]"}]}}} for i in range(50)]
    raw = b"".join(orjson.dumps(d, option=orjson.OPT_INDENT_2 if i % 3 == 0 else 0)
                   + (b"\r\n" if i % 2 else b"") for i, d in enumerate(docs))
    splitter = JsonObjectSplitter(10_000)
    out = [item for start in range(0, len(raw), chunk)
           for item in splitter.feed(raw[start:start + chunk])]
    assert splitter.close() is None
    assert [d.value for d in out if isinstance(d, Document)] == docs


def test_splitter_bounds_an_object_and_reports_garbage() -> None:
    splitter = JsonObjectSplitter(100)
    assert splitter.feed(b'{"a": 1}\n{"b": "' + b"x" * 200) == [
        Document({"a": 1}, None, 8), ObjectTooLarge(7 + 200, 100)]
    assert splitter.feed(b'"}') == []  # after an error the stream is over
    bad = JsonObjectSplitter(100).feed(b'{"a": 1,}\n{"b": 2} [')
    assert isinstance(bad[0], Document) and bad[0].error is not None
    assert (bad[0].error.code, bad[0].error.status) == ("malformed_json", 400)
    assert bad[1] == Document({"b": 2}, None, 8)
    assert "found" in repr(bad[2])
    assert JsonObjectSplitter(100).close() is None


# --- clusters and topics ------------------------------------------------------------------


async def test_cluster_and_topic_discovery(
    http: aiohttp.ClientSession, cluster_id: str, widgets: dict[str, Any]
) -> None:
    assert cluster_id == "tansu_cluster"  # the broker's own id, from its metadata
    async with http.get(f"/v3/clusters/{cluster_id}") as resp:
        body = await resp.json()
    assert (resp.status, body["kind"], body["cluster_id"]) == (200, "KafkaCluster", cluster_id)
    assert body["metadata"]["self"].endswith(f"/v3/clusters/{cluster_id}")
    topic = widgets["topic"]
    async with http.get(f"/v3/clusters/{cluster_id}/topics/{topic}") as resp:
        body = await resp.json()
    assert resp.status == 200, body
    assert (body["kind"], body["topic_name"], body["partitions_count"]) == (
        "KafkaTopic", topic, PARTITIONS)
    for path in ("/v3/clusters/no-such-cluster", f"/v3/clusters/nope/topics/{topic}"):
        async with http.get(path) as resp:
            assert_error(resp.status, await resp.json(), 404, 404, "not_found",
                         "Cluster nope" if "nope" in path else "no-such-cluster")
    async with http.get(f"/v3/clusters/{cluster_id}/topics/{unique('nope')}") as resp:
        assert_error(resp.status, await resp.json(), 404, 40403, "not_found",
                     "does not host this topic-partition")


# --- one record ---------------------------------------------------------------------------


async def test_documented_request_lands_in_kafka_with_headers_and_timestamp(
    http: aiohttp.ClientSession, runtime: Runtime, broker: str, cluster_id: str,
    widgets: dict[str, Any],
) -> None:
    topic, v2 = widgets["topic"], widgets["v2"]
    record = widget("doc-1", colour="blue")
    # The "binary_and_json" example of Confluent's ProduceRequest (api/v3/openapi.yaml),
    # with this record's own key bytes and partition in place of 'Zm9vYmFy' and 1.
    body = {
        "partition_id": partition_of("doc-1"),
        "headers": [
            {"name": "Header-1", "value": "SGVhZGVyLTE="},
            {"name": "Header-2", "value": "SGVhZGVyLTI="},
        ],
        "key": {"type": "BINARY", "data": base64.b64encode(key_of("doc-1")).decode()},
        "value": {"type": "JSON", "data": record},
        "timestamp": "2021-02-05T19:14:42Z",
    }
    status, reply = await post(http, cluster_id, topic, body)
    assert status == 200, reply
    value_size = reply["value"]["size"]
    assert reply == {
        "error_code": 200, "cluster_id": cluster_id, "topic_name": topic,
        "partition_id": partition_of("doc-1"), "offset": reply["offset"],
        "timestamp": "2021-02-05T19:14:42Z",
        "key": {"type": "BINARY", "size": len(key_of("doc-1"))},
        "value": {"type": "AVRO", "subject": f"{topic}-value", "schema_id": v2["id"],
                  "schema_version": 2, "size": value_size},
    }
    # The "latest_schema" and "schema_id_and_schema_version" examples (value part), and a
    # header with a null value (allowed by the schema: "value": base64 or null).
    for extra in ({"value": {"data": widget("doc-2")}},
                  {"value": {"schema_version": 1, "data": widget("doc-3")},
                   "headers": [{"name": "trace", "value": None}]}):
        status, reply = await post(http, cluster_id, topic, extra)
        assert status == 200, reply

    records, _ = await read_topic(broker, topic, PARTITIONS)
    by_id = {decode(r.value, runtime.registry.state.schema_by_id)[1]["id"]: r
             for rs in records.values() for r in rs}
    doc1 = by_id["doc-1"]
    assert doc1.key == key_of("doc-1")
    assert doc1.partition == partition_of("doc-1")
    assert list(doc1.headers) == [("Header-1", b"Header-1"), ("Header-2", b"Header-2")]
    assert doc1.timestamp == int(datetime(2021, 2, 5, 19, 14, 42, tzinfo=UTC).timestamp() * 1000)
    assert len(doc1.value) == value_size
    schema_id, datum = decode(doc1.value, runtime.registry.state.schema_by_id)
    assert (schema_id, datum) == (v2["id"], record)
    assert decode(by_id["doc-3"].value, runtime.registry.state.schema_by_id)[0] == \
        widgets["v1"]["id"]
    assert list(by_id["doc-3"].headers) == [("trace", None)]


async def test_schema_id_and_version_select_the_writer(
    http: aiohttp.ClientSession, broker: str, cluster_id: str, widgets: dict[str, Any]
) -> None:
    topic, v1, v2 = widgets["topic"], widgets["v1"], widgets["v2"]
    cases = [({"schema_id": v1["id"]}, v1, 1), ({"schema_id": v2["id"]}, v2, 2),
             ({"schema_version": 1}, v1, 1), ({"schema_version": 2}, v2, 2),
             ({"subject": f"{topic}-value"}, v2, 2), ({}, v2, 2)]
    for selector, want, version in cases:
        status, reply = await post(http, cluster_id, topic,
                                   {"value": {**selector, "data": widget("sel")}})
        assert status == 200, (selector, reply)
        assert (reply["value"]["schema_id"], reply["value"]["schema_version"]) == (
            want["id"], version), selector
    other = unique("v3-other")
    foreign = await create_topic(http, other, {**WIDGET_V1, "name": "Other"}, key=["id"])
    before = await high_watermarks(broker, topic, PARTITIONS)
    status, reply = await post(http, cluster_id, topic,
                               {"value": {"schema_id": foreign["id"], "data": widget("x")}})
    assert_error(status, reply, 422, 422, "schema_not_of_topic",
                 f"registered for ['{other}-value']")
    status, reply = await post(http, cluster_id, topic,
                               {"value": {"schema_id": 99999, "data": widget("x")}})
    assert_error(status, reply, 422, 422, "schema_not_of_topic", "no schema has that id")
    status, reply = await post(http, cluster_id, topic,
                               {"value": {"schema_version": 7, "data": widget("x")}})
    assert_error(status, reply, 404, 40402, "not_found", "version 7")
    status, reply = await post(http, cluster_id, topic,
                               {"value": {"schema_version": 1, "data": widget("x", colour="x")}})
    assert_error(status, reply, 422, 42210, "invalid_records", "unknown field 'colour'")
    assert reply["errors"][0]["path"] == ""
    assert await high_watermarks(broker, topic, PARTITIONS) == before


async def test_keys_partitions_and_headers_that_disagree_are_refused(
    http: aiohttp.ClientSession, broker: str, cluster_id: str, widgets: dict[str, Any]
) -> None:
    topic = widgets["topic"]
    good = widget("k-1")
    for key in ({"type": "JSON", "data": {"id": "k-1"}}, {"data": "k-1"},
                {"type": "STRING", "data": "k-1"},
                {"type": "BINARY", "data": base64.b64encode(key_of("k-1")).decode()}):
        status, reply = await post(http, cluster_id, topic, {"key": key, "value": {"data": good}})
        assert status == 200, (key, reply)
    before = await high_watermarks(broker, topic, PARTITIONS)
    refusals: list[tuple[dict[str, Any], int, str, str]] = [
        ({"key": {"type": "JSON", "data": {"id": "k-2"}}}, 422, "key_mismatch", "disagrees"),
        ({"key": {"data": "other"}}, 422, "key_mismatch", "unique key"),
        ({"key": {"type": "BINARY", "data": "Zm9vYmFy"}}, 422, "key_mismatch", "base64"),
        ({"key": {"type": "AVRO", "data": "k-1"}}, 422, "key_mismatch", "'AVRO'"),
        ({"partition_id": (partition_of("k-1") + 1) % PARTITIONS}, 422, "key_mismatch",
         f"not the partition of this record's unique key ({partition_of('k-1')})"),
        ({"partition_id": -1}, 404, "not_found", "Partition not found"),
        ({"headers": [{"name": "X-Evil\r\nInjected: 1", "value": "eA=="}]}, 422,
         "invalid_header", "control character '\\r'"),
        ({"headers": [{"name": "", "value": "eA=="}]}, 422, "invalid_header", "empty"),
        ({"headers": [{"name": "h", "value": "not base64!"}]}, 400, "invalid_produce_request",
         "not base64"),
        ({"headers": [{"name": f"h{i}", "value": None} for i in range(65)]}, 422,
         "invalid_header", "limit is 64"),
        ({"timestamp": 1612552482}, 400, "invalid_produce_request", "ISO-8601"),
        ({"value": {"type": "BINARY", "data": "eA=="}}, 422, "unsupported_format", "Avro"),
        ({"value": {"data": None}}, 422, "invalid_produce_request", "tombstone"),
        ({"colour": 1}, 400, "invalid_produce_request", "unrecognized field"),
    ]
    for change, want, code, fragment in refusals:
        status, reply = await post(http, cluster_id, topic, {"value": {"data": good}, **change})
        assert_error(status, reply, want, reply.get("error_code", -1), code, fragment)
        assert reply["error_code"] in (want, 40402), reply
    assert await high_watermarks(broker, topic, PARTITIONS) == before


async def test_unknown_topic_cluster_and_content_type(
    http: aiohttp.ClientSession, cluster_id: str, widgets: dict[str, Any]
) -> None:
    body = {"value": {"data": widget("u")}}
    status, reply = await post(http, cluster_id, unique("v3-none"), body)
    assert_error(status, reply, 404, 40403, "not_found", "does not host this topic-partition")
    status, reply = await post(http, "lkc-other", widgets["topic"], body)
    assert_error(status, reply, 404, 404, "not_found", "Cluster lkc-other cannot be found.")
    for ctype in ("text/plain", "application/vnd.kafka.json.v2+json"):
        status, reply = await post(http, cluster_id, widgets["topic"], body,
                                   {"Content-Type": ctype})
        assert_error(status, reply, 415, 415, "unsupported_media_type", "application/json")
    status, reply = await post(http, cluster_id, widgets["topic"], "a string")
    assert_error(status, reply, 400, 400, "malformed_json", "expected a JSON object")
    async with http.post(f"/v3/clusters/{cluster_id}/topics/{widgets['topic']}/records",
                         data=b" \n", headers=JSON) as resp:
        assert_error(resp.status, await resp.json(), 422, 422, "empty_body",
                     "Request body is empty")


# --- streaming ----------------------------------------------------------------------------


async def test_streamed_records_answer_in_order_and_land_exactly_once(
    http: aiohttp.ClientSession, runtime: Runtime, broker: str, cluster_id: str,
    widgets: dict[str, Any],
) -> None:
    topic = widgets["topic"]
    count = 1000
    invalid = {17, 500, 999}
    run = unique("s")
    requests = [
        {"value": {"data": widget(f"{run}-{i}", version=i,
                                  **({"qty": "many"} if i in invalid else {}))},
         "headers": [{"name": "seq", "value": base64.b64encode(str(i).encode()).decode()}]}
        for i in range(count)
    ]
    # Concatenated JSON, some objects newline-separated and some not, cut into 333-byte
    # chunks that split records anywhere.
    raw = b"".join(orjson.dumps(r) + (b"\n" if i % 3 else b"") for i, r in enumerate(requests))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 333):
            yield raw[start:start + 333]

    before = await high_watermarks(broker, topic, PARTITIONS)
    async with http.post(f"/v3/clusters/{cluster_id}/topics/{topic}/records", data=chunks(),
                         headers=JSON) as resp:
        assert resp.status == 200
        assert resp.headers["Transfer-Encoding"] == "chunked"
        text = await resp.read()
    replies = [orjson.loads(line) for line in text.split(b"\r\n") if line]
    assert len(replies) == count
    offsets: dict[int, list[int]] = {}
    for i, reply in enumerate(replies):
        if i in invalid:
            assert reply["error_code"] == 42210, reply
            assert reply["errors"] == [{"index": i, "path": "qty",
                                        "reason": reply["errors"][0]["reason"]}]
            assert f"record {i} of the stream" in reply["message"]
            continue
        assert reply["error_code"] == 200, reply
        assert reply["partition_id"] == partition_of(f"{run}-{i}")
        offsets.setdefault(reply["partition_id"], []).append(reply["offset"])
    for partition, seen in offsets.items():  # in order: offsets grow within a partition
        assert seen == sorted(seen) and len(set(seen)) == len(seen), partition

    records, after = await read_topic(broker, topic, PARTITIONS)
    assert sum(after.values()) - sum(before.values()) == count - len(invalid)
    mine = [(r, decode(r.value, runtime.registry.state.schema_by_id)[1]) for rs in
            records.values() for r in rs]
    mine = [(r, d) for r, d in mine if d["id"].startswith(f"{run}-")]
    ids = sorted(d["version"] for _, d in mine)
    assert ids == [i for i in range(count) if i not in invalid]  # each exactly once
    for r, d in mine:
        assert dict(r.headers)["seq"] == str(d["version"]).encode()
        assert (r.partition, r.offset) == (replies[d["version"]]["partition_id"],
                                           replies[d["version"]]["offset"])


async def test_a_body_of_several_requests_is_answered_as_a_stream(
    http: aiohttp.ClientSession, cluster_id: str, widgets: dict[str, Any]
) -> None:
    raw = b'{"value": {"data": %b}}\n{"value": {"data": {"id": 1}}}{"value": {"data": 1, ' \
        b'"data": 2}}\n{"value": ' % orjson.dumps(widget("multi"))
    async with http.post(f"/v3/clusters/{cluster_id}/topics/{widgets['topic']}/records",
                         data=raw, headers=JSON) as resp:
        assert resp.status == 200
        lines = [orjson.loads(x) for x in (await resp.read()).split(b"\r\n") if x]
    assert [x["error_code"] for x in lines] == [200, 42210, 400, 400]
    assert lines[2]["code"] == "duplicate_key"
    assert "end of stream inside a JSON object" in lines[3]["message"]


def _runs_through(step: Coroutine[Any, Any, None]) -> bool:
    """Run ``step`` to its next wait, without the event loop: whether it finished."""
    try:
        step.send(None)
    except StopIteration:
        return True
    return False


async def test_a_stream_budget_holds_at_most_its_bytes() -> None:
    from onepipe.app.web.produce_v3 import _Budget  # noqa: PLC0415 - a private part, tested alone

    budget = _Budget(100)
    assert _runs_through(budget.take(60))
    second = budget.take(60)  # would hold 120: waits
    assert not _runs_through(second)
    budget.give(60)
    assert _runs_through(second)  # room made: it goes on
    huge = budget.take(500)  # larger than the budget: only alone
    assert not _runs_through(huge)
    budget.give(60)
    assert _runs_through(huge)
