"""The registry's Confluent REST subset and the topic catalog endpoints, over real HTTP.

Shapes and error codes are Confluent's (so its clients work unchanged): 40401 subject,
40402 version, 40403 schema, 40408 subject config not found (40401 when deleting it), 409
incompatible, 42201 invalid schema, 42202 invalid version, 42203 invalid level. Deletes
and modes: tests/app/test_registry_deletes.py and test_registry_mode.py. Every test uses its own
subjects and topics on the shared worker runtime; the one test that changes the global
level puts it back.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
import pytest

from tests.fixtures.services import unique

REGISTRY_TYPE = "application/vnd.schemaregistry.v1+json"


def record(name: str, *fields: tuple[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": name,
            "fields": [{"name": n, "type": t} for n, t in fields]}


def fresh_record() -> dict[str, Any]:
    """A schema no other test registers (a field name of its own), so its id is its own."""
    return record("Fresh", ("k", "string"), (f"u_{uuid.uuid4().hex}", "string"))


V1 = record("Widget", ("id", "string"), ("n", "long"))
V2 = {**V1, "fields": [*V1["fields"], {"name": "note", "type": "string", "default": ""}]}
V3 = {**V2, "fields": [*V2["fields"], {"name": "size", "type": "int", "default": 0}]}
#: Adds a field without a default, so it cannot read data of V1-V3 (BACKWARD fails).
BREAKING = record("Widget", ("id", "string"), ("required", "string"))


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None,
               **kwargs: Any) -> tuple[int, Any]:
    """Status and body (JSON when it parses) of one request; a 500 is always a failure."""
    if body is not None:
        kwargs["json"] = body
    async with http.request(method, url, **kwargs) as resp:
        status, text = resp.status, await resp.text()
        ctype = resp.content_type
    assert status < 500, f"{method} {url} answered {status}: {text}"
    try:
        data = json.loads(text)
    except ValueError:
        data = text
    if status >= 400:
        assert isinstance(data, dict), f"{method} {url}: error body is not JSON: {text!r}"
        assert isinstance(data.get("error_code"), int) and data.get("message"), data
        assert ctype == "application/json", ctype
    return status, data


async def register(http: aiohttp.ClientSession, subject: str, schema: Any) -> tuple[int, Any]:
    return await call(http, "POST", f"/subjects/{subject}/versions",
                      {"schema": json.dumps(schema)})


async def register_ok(http: aiohttp.ClientSession, subject: str, schema: Any) -> int:
    status, body = await register(http, subject, schema)
    assert status == 200, body
    assert set(body) >= {"id"} and isinstance(body["id"], int), body
    return int(body["id"])


def assert_error(status: int, body: Any, http_status: int, error_code: int) -> None:
    assert (status, body["error_code"]) == (http_status, error_code), body


# --------------------------------------------------------------------------- subjects


async def test_subjects_versions_and_schema_by_version(http: aiohttp.ClientSession) -> None:
    subject = unique("api")
    status, body = await call(http, "GET", f"/subjects/{subject}/versions")
    assert_error(status, body, 404, 40401)

    id1 = await register_ok(http, subject, V1)
    id2 = await register_ok(http, subject, V2)
    id3 = await register_ok(http, subject, V3)
    assert len({id1, id2, id3}) == 3

    status, subjects = await call(http, "GET", "/subjects")
    assert status == 200 and subject in subjects
    assert subjects == sorted(subjects)
    assert (await call(http, "GET", f"/subjects/{subject}/versions")) == (200, [1, 2, 3])

    status, body = await call(http, "GET", f"/subjects/{subject}/versions/2")
    assert status == 200
    assert set(body) == {"subject", "version", "id", "schema"}
    assert (body["subject"], body["version"], body["id"]) == (subject, 2, id2)
    assert json.loads(body["schema"]) == V2
    for latest in ("latest", "-1"):
        status, body = await call(http, "GET", f"/subjects/{subject}/versions/{latest}")
        assert status == 200 and (body["version"], body["id"]) == (3, id3), body

    async with http.get(f"/subjects/{subject}/versions/1/schema") as resp:
        assert resp.status == 200
        assert resp.content_type == REGISTRY_TYPE
        assert json.loads(await resp.text()) == V1

    status, body = await call(http, "GET", f"/subjects/{subject}/versions/4")
    assert_error(status, body, 404, 40402)
    status, body = await call(http, "GET", f"/subjects/{subject}/versions/abc")
    assert_error(status, body, 422, 42202)
    status, body = await call(http, "GET", f"/subjects/{unique('nope')}/versions/1")
    assert_error(status, body, 404, 40401)


async def test_registry_replies_carry_the_registry_content_type(
        http: aiohttp.ClientSession) -> None:
    async with http.get("/subjects") as resp:
        assert resp.status == 200
        assert resp.content_type == REGISTRY_TYPE
        assert isinstance(await resp.json(content_type=None), list)


async def test_register_is_idempotent(http: aiohttp.ClientSession) -> None:
    subject = unique("api")
    first = await register_ok(http, subject, V1)
    # The same schema again, even with its keys in another order and other whitespace.
    reordered = json.dumps({"fields": V1["fields"], "name": "Widget", "type": "record"},
                           indent=2)
    status, body = await call(http, "POST", f"/subjects/{subject}/versions",
                              {"schema": reordered})
    assert (status, body["id"]) == (200, first), body
    assert await register_ok(http, subject, V1) == first
    assert (await call(http, "GET", f"/subjects/{subject}/versions")) == (200, [1])


async def test_one_schema_under_two_subjects_shares_its_id(http: aiohttp.ClientSession) -> None:
    a, b = unique("api"), unique("api")
    schema = fresh_record()
    id_a = await register_ok(http, a, schema)
    id_b = await register_ok(http, b, schema)
    assert id_a == id_b
    status, body = await call(http, "GET", f"/schemas/ids/{id_a}/versions")
    assert status == 200
    assert {"subject": a, "version": 1} in body and {"subject": b, "version": 1} in body
    assert all(set(item) == {"subject", "version"} for item in body)


async def test_lookup_under_subject(http: aiohttp.ClientSession) -> None:
    subject = unique("api")
    await register_ok(http, subject, V1)
    id2 = await register_ok(http, subject, V2)

    status, body = await call(http, "POST", f"/subjects/{subject}",
                              {"schema": json.dumps(V2)})
    assert status == 200
    assert (body["subject"], body["version"], body["id"]) == (subject, 2, id2)
    assert json.loads(body["schema"]) == V2

    # Looked up in another spelling (key order, whitespace), the answer is the text as
    # registered, as Confluent stores it.
    respelled = json.dumps(dict(reversed(list(V2.items()))), indent=1)
    status, body = await call(http, "POST", f"/subjects/{subject}", {"schema": respelled})
    assert (status, body["id"], body["schema"]) == (200, id2, json.dumps(V2)), body

    status, body = await call(http, "POST", f"/subjects/{unique('nope')}",
                              {"schema": json.dumps(V2)})
    assert_error(status, body, 404, 40401)
    status, body = await call(http, "POST", f"/subjects/{subject}",
                              {"schema": json.dumps(V3)})
    assert_error(status, body, 404, 40403)
    # A schema registered elsewhere is still "not under this subject".
    other = unique("api")
    await register_ok(http, other, V3)
    status, body = await call(http, "POST", f"/subjects/{subject}",
                              {"schema": json.dumps(V3)})
    assert_error(status, body, 404, 40403)


# ---------------------------------------------------------------------------- schemas


async def test_schema_by_id(http: aiohttp.ClientSession) -> None:
    subject = unique("api")
    schema = fresh_record()
    schema_id = await register_ok(http, subject, schema)
    status, body = await call(http, "GET", f"/schemas/ids/{schema_id}")
    assert status == 200 and set(body) == {"schema"}
    assert json.loads(body["schema"]) == schema
    assert (await call(http, "GET", f"/schemas/ids/{schema_id}/versions")) == (
        200, [{"subject": subject, "version": 1}])

    for missing in ("999999999", "abc", "-1", "0"):
        status, body = await call(http, "GET", f"/schemas/ids/{missing}")
        assert_error(status, body, 404, 40403)
    status, body = await call(http, "GET", "/schemas/ids/999999999/versions")
    assert_error(status, body, 404, 40403)


async def test_schema_types(http: aiohttp.ClientSession) -> None:
    assert await call(http, "GET", "/schemas/types") == (200, ["AVRO"])


async def test_invalid_schemas_are_42201(http: aiohttp.ClientSession) -> None:
    subject = unique("api")
    bad_bodies: list[Any] = [
        {"schema": json.dumps({"type": "record", "name": "R",
                               "fields": [{"name": "a", "type": "nosuchtype"}]})},
        {"schema": "{not json"},
        {"schema": V1},  # the schema must be a JSON *string*, as Confluent takes it
        {"schema": 17},
        {"schema": json.dumps(V1), "schemaType": "PROTOBUF"},
        {"schema": json.dumps(V1),
         "references": [{"name": "Other", "subject": "other-value", "version": 1}]},
        {"schemaType": "AVRO"},
        [json.dumps(V1)],
    ]
    for body in bad_bodies:
        status, reply = await call(http, "POST", f"/subjects/{subject}/versions", body)
        assert_error(status, reply, 422, 42201)
        assert reply["message"], reply
    # Nothing was registered by any of them.
    status, reply = await call(http, "GET", f"/subjects/{subject}/versions")
    assert_error(status, reply, 404, 40401)
    # An explicit AVRO schemaType and empty references are fine.
    status, reply = await call(http, "POST", f"/subjects/{subject}/versions",
                               {"schema": json.dumps(V1), "schemaType": "AVRO",
                                "references": []})
    assert status == 200 and isinstance(reply["id"], int), reply


async def test_incompatible_register_is_409_and_changes_nothing(
        http: aiohttp.ClientSession) -> None:
    subject = unique("api")
    await register_ok(http, subject, V1)
    status, body = await register(http, subject, BREAKING)
    assert_error(status, body, 409, 409)
    assert "incompatible" in body["message"]
    assert (await call(http, "GET", f"/subjects/{subject}/versions")) == (200, [1])


# ----------------------------------------------------------------------------- config


async def test_global_config(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", "/config")
    assert status == 200 and set(body) == {"compatibilityLevel"}
    original = body["compatibilityLevel"]
    other = "FULL" if original != "FULL" else "FORWARD"
    try:
        status, body = await call(http, "PUT", "/config", {"compatibility": other.lower()})
        assert (status, body) == (200, {"compatibility": other})
        assert await call(http, "GET", "/config") == (200, {"compatibilityLevel": other})
        # A subject without a level of its own follows the global one.
        subject = unique("api")
        status, body = await call(http, "GET", f"/config/{subject}?defaultToGlobal=true")
        assert (status, body) == (200, {"compatibilityLevel": other})
    finally:
        status, body = await call(http, "PUT", "/config", {"compatibility": original})
        assert status == 200, body
    assert await call(http, "GET", "/config") == (200, {"compatibilityLevel": original})


async def test_subject_config(http: aiohttp.ClientSession) -> None:
    subject = unique("api")
    status, body = await call(http, "GET", f"/config/{subject}")
    assert_error(status, body, 404, 40408)
    status, global_level = await call(http, "GET", "/config")
    assert await call(http, "GET", f"/config/{subject}?defaultToGlobal=true") == (
        200, global_level)

    assert await call(http, "PUT", f"/config/{subject}", {"compatibility": "FORWARD"}) == (
        200, {"compatibility": "FORWARD"})
    assert await call(http, "GET", f"/config/{subject}") == (
        200, {"compatibilityLevel": "FORWARD"})
    assert await call(http, "GET", f"/config/{subject}?defaultToGlobal=true") == (
        200, {"compatibilityLevel": "FORWARD"})

    assert await call(http, "DELETE", f"/config/{subject}") == (
        200, {"compatibilityLevel": "FORWARD"})
    status, body = await call(http, "GET", f"/config/{subject}")
    assert_error(status, body, 404, 40408)
    # Deleting a level that is not there is 40401 in Confluent (not 40408).
    status, body = await call(http, "DELETE", f"/config/{subject}")
    assert_error(status, body, 404, 40401)


async def test_invalid_level_is_42203(http: aiohttp.ClientSession) -> None:
    subject = unique("api")
    for level in ("SIDEWAYS", 3, None, ""):
        status, body = await call(http, "PUT", f"/config/{subject}", {"compatibility": level})
        assert_error(status, body, 422, 42203)
    status, body = await call(http, "PUT", "/config", {"compatibility": "SIDEWAYS"})
    assert_error(status, body, 422, 42203)
    status, body = await call(http, "GET", f"/config/{subject}")
    assert_error(status, body, 404, 40408)


async def test_subject_level_decides_registration(http: aiohttp.ClientSession) -> None:
    subject = unique("api")
    await register_ok(http, subject, V1)
    status, body = await register(http, subject, BREAKING)
    assert_error(status, body, 409, 409)
    await call(http, "PUT", f"/config/{subject}", {"compatibility": "NONE"})
    await register_ok(http, subject, BREAKING)
    assert (await call(http, "GET", f"/subjects/{subject}/versions")) == (200, [1, 2])


# ---------------------------------------------------------------------- compatibility


async def test_compatibility_endpoints(http: aiohttp.ClientSession) -> None:
    subject = unique("api")
    await register_ok(http, subject, V1)
    await register_ok(http, subject, V2)
    compatible = {"schema": json.dumps(V3)}
    breaking = {"schema": json.dumps(BREAKING)}

    for url in (f"/compatibility/subjects/{subject}/versions",
                f"/compatibility/subjects/{subject}/versions/latest",
                f"/compatibility/subjects/{subject}/versions/1",
                f"/compatibility/subjects/{subject}/versions/-1"):
        status, body = await call(http, "POST", url, compatible)
        assert status == 200 and body["is_compatible"] is True, (url, body)
        status, body = await call(http, "POST", url, breaking)
        assert status == 200 and body["is_compatible"] is False, (url, body)
        assert body["messages"], body

    status, body = await call(http, "POST",
                              f"/compatibility/subjects/{subject}/versions/latest?verbose=true",
                              compatible)
    assert (status, body) == (200, {"is_compatible": True, "messages": []})

    # A check changes nothing.
    assert (await call(http, "GET", f"/subjects/{subject}/versions")) == (200, [1, 2])

    for version in ("abc", "0", "1.5"):
        status, body = await call(
            http, "POST", f"/compatibility/subjects/{subject}/versions/{version}", compatible)
        assert_error(status, body, 422, 42202)
    status, body = await call(http, "POST",
                              f"/compatibility/subjects/{subject}/versions/9", compatible)
    assert_error(status, body, 404, 40402)
    status, body = await call(http, "POST", f"/compatibility/subjects/{subject}/versions",
                              {"schema": "{not json"})
    assert_error(status, body, 422, 42201)


async def test_compatibility_against_a_new_subject(http: aiohttp.ClientSession) -> None:
    subject = unique("api")
    for url in (f"/compatibility/subjects/{subject}/versions",
                f"/compatibility/subjects/{subject}/versions/latest",
                f"/compatibility/subjects/{subject}/versions/-1"):
        status, body = await call(http, "POST", url, {"schema": json.dumps(V1)})
        assert status == 200 and body["is_compatible"] is True, body
    status, body = await call(http, "POST", f"/compatibility/subjects/{subject}/versions/1",
                              {"schema": json.dumps(V1)})
    assert_error(status, body, 404, 40401)


async def test_transitive_check_covers_every_version(http: aiohttp.ClientSession) -> None:
    subject = unique("api")
    await call(http, "PUT", f"/config/{subject}", {"compatibility": "NONE"})
    await register_ok(http, subject, V1)  # n: long, required
    dropped_n = record("Widget", ("id", "string"))
    await register_ok(http, subject, dropped_n)
    readd_n = record("Widget", ("id", "string"), ("n", "long"))
    # FORWARD: the latest version (only `id`) reads anything that writes `id`.
    await call(http, "PUT", f"/config/{subject}", {"compatibility": "FORWARD"})
    url = f"/compatibility/subjects/{subject}/versions"
    candidate = {"schema": json.dumps(record("Widget", ("id", "string"), ("m", "int")))}
    status, body = await call(http, "POST", url, candidate)
    assert status == 200 and body["is_compatible"] is True, body
    # Version 1 needs `n`, which the candidate does not write.
    await call(http, "PUT", f"/config/{subject}", {"compatibility": "FORWARD_TRANSITIVE"})
    status, body = await call(http, "POST", url, candidate)
    assert status == 200 and body["is_compatible"] is False, body
    status, body = await call(http, "POST", url, {"schema": json.dumps(readd_n)})
    assert status == 200 and body["is_compatible"] is True, body


# ------------------------------------------------------------------------ HTTP errors


async def test_malformed_json_is_400(http: aiohttp.ClientSession) -> None:
    subject = unique("api")
    for url in (f"/subjects/{subject}/versions", f"/config/{subject}"):
        method = "POST" if "versions" in url else "PUT"
        status, body = await call(http, method, url, data=b'{"schema": ',
                                  headers={"Content-Type": "application/json"})
        assert status == 400, body
        assert "JSON" in body["message"]
    status, body = await call(http, "POST", f"/subjects/{subject}/versions", data=b"",
                              headers={"Content-Type": "application/json"})
    assert status == 400, body


async def test_unknown_route_is_json_404(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", "/no/such/endpoint")
    assert status == 404
    assert "/no/such/endpoint" in body["message"]
    status, body = await call(http, "PATCH", "/subjects")
    assert status == 405


# ---------------------------------------------------------------------- topic catalog

WIDGET = record("Widget", ("widget_id", "string"), ("version", "long"),
                ("name", "string"), ("clock", {"type": "map", "values": "long"}),
                ("bad_clock", {"type": "map", "values": "string"}))


def entry(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"schema": WIDGET, "key": ["widget_id"],
                            "order": {"rule": "max", "field": "version"}, "partitions": 2}
    base.update(overrides)
    return base


async def put_topic(http: aiohttp.ClientSession, topic: str, body: Any) -> tuple[int, Any]:
    return await call(http, "PUT", f"/topics/{topic}/metadata", body)


async def test_topic_metadata_round_trip(http: aiohttp.ClientSession) -> None:
    topic = unique("widgets")
    status, body = await put_topic(http, topic, entry())
    assert status == 200, body
    assert body["topic"] == topic and body["version"] == 1 and isinstance(body["id"], int)
    assert body["changes"]
    schema_id = body["id"]

    status, topics = await call(http, "GET", "/topics")
    assert status == 200 and topic in topics and topics == sorted(topics)
    status, meta = await call(http, "GET", f"/topics/{topic}/metadata")
    assert status == 200
    assert (meta["topic"], meta["schema_id"], meta["version"]) == (topic, schema_id, 1)
    assert meta["schema"] == WIDGET
    assert meta["key"] == ["widget_id"]
    assert meta["order"] == {"rule": "max", "field": "version"}
    assert meta["partitions"] == 2
    assert meta["compatibility"] == "BACKWARD_TRANSITIVE"

    # The value subject is an ordinary Confluent subject with the topic's level pinned.
    assert await call(http, "GET", f"/subjects/{topic}-value/versions") == (200, [1])
    assert await call(http, "GET", f"/config/{topic}-value") == (
        200, {"compatibilityLevel": "BACKWARD_TRANSITIVE"})

    # Applying the same entry again changes nothing.
    status, body = await put_topic(http, topic, entry())
    assert (status, body["changes"], body["id"], body["version"]) == (200, [], schema_id, 1)


async def test_unknown_topic_metadata_is_404(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", f"/topics/{unique('nope')}/metadata")
    assert status == 404 and body["error_code"] == 40410


async def test_topic_value_subject_only_takes_fitting_records(
        http: aiohttp.ClientSession) -> None:
    topic = unique("widgets")
    status, body = await put_topic(http, topic, entry())
    assert status == 200, body
    subject = f"{topic}-value"

    status, body = await register(http, subject, "string")
    assert_error(status, body, 422, 42201)
    assert topic in body["message"]
    no_key = {**WIDGET, "fields": [f for f in WIDGET["fields"] if f["name"] != "widget_id"]}
    status, body = await register(http, subject, no_key)
    assert_error(status, body, 422, 42201)
    assert "widget_id" in body["message"]
    assert await call(http, "GET", f"/subjects/{subject}/versions") == (200, [1])

    # A record that keeps the key and evolves compatibly is a new version.
    evolved = {**WIDGET, "fields": [*WIDGET["fields"],
                                    {"name": "color", "type": "string", "default": ""}]}
    await register_ok(http, subject, evolved)
    assert await call(http, "GET", f"/subjects/{subject}/versions") == (200, [1, 2])
    status, meta = await call(http, "GET", f"/topics/{topic}/metadata")
    assert (status, meta["version"], meta["schema"]) == (200, 2, evolved)


@pytest.mark.parametrize(
    ("overrides", "field", "mentions"),
    [
        ({"key": ["missing_id"]}, "key[0]", "missing_id"),
        ({"order": {"rule": "max", "field": "name"}}, "order.field", "name"),
        ({"order": {"rule": "vector_clock", "field": "bad_clock"}}, "order.field", "bad_clock"),
        ({"order": {"rule": "vector_clock", "field": "version"}}, "order.field", "version"),
        ({"partiton_time": "kafka"}, "partiton_time", "partiton_time"),
        ({"partitions": 0}, "partitions", "partitions"),
    ],
    ids=["key-not-in-schema", "max-on-string", "clock-map-string", "clock-not-map",
         "unknown-key", "zero-partitions"],
)
async def test_topic_metadata_rejections_name_the_field(
        http: aiohttp.ClientSession, overrides: dict[str, Any], field: str,
        mentions: str) -> None:
    topic = unique("widgets")
    status, body = await put_topic(http, topic, entry(**overrides))
    assert status == 422, body
    assert body["field"] == field, body
    assert mentions in body["message"], body
    # A refused entry changes nothing: no topic metadata, no subject.
    status, body = await call(http, "GET", f"/topics/{topic}/metadata")
    assert status == 404, body
    status, body = await call(http, "GET", f"/subjects/{topic}-value/versions")
    assert_error(status, body, 404, 40401)
    status, topics = await call(http, "GET", "/topics")
    assert topic not in topics


async def test_vector_clock_order_on_a_map_of_longs_is_accepted(
        http: aiohttp.ClientSession) -> None:
    topic = unique("widgets")
    status, body = await put_topic(http, topic,
                                   entry(order={"rule": "vector_clock", "field": "clock"}))
    assert status == 200, body
    status, meta = await call(http, "GET", f"/topics/{topic}/metadata")
    assert meta["order"] == {"rule": "vector_clock", "field": "clock"}
