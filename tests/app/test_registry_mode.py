"""Registry modes over real HTTP, and the endpoints clients list and look up with.

READONLY (per subject or global) refuses registrations, deletes and level changes with
42205 and leaves reads, lookups, compatibility checks and produce alone; IMPORT and
unknown modes are 42204. The test that sets the global mode puts it back.
"""

from __future__ import annotations

import json

import aiohttp

from onepipe.schemas.compatibility import DEFAULT_COMPATIBILITY
from tests.app.test_registry_api import (
    V1,
    V2,
    assert_error,
    call,
    entry,
    fresh_record,
    put_topic,
    register,
    register_ok,
)
from tests.fixtures.services import unique


async def test_subject_mode_round_trip(http: aiohttp.ClientSession) -> None:
    subject = unique("mode")
    assert await call(http, "GET", "/mode") == (200, {"mode": "READWRITE"})
    status, body = await call(http, "GET", f"/mode/{subject}")
    assert_error(status, body, 404, 40409)
    assert await call(http, "GET", f"/mode/{subject}?defaultToGlobal=true") == (
        200, {"mode": "READWRITE"})
    status, body = await call(http, "DELETE", f"/mode/{subject}")
    assert_error(status, body, 404, 40401)
    for bad in ("IMPORT", "SIDEWAYS", None):
        status, body = await call(http, "PUT", f"/mode/{subject}", {"mode": bad})
        assert_error(status, body, 422, 42204)

    await register_ok(http, subject, V1)
    assert await call(http, "PUT", f"/mode/{subject}", {"mode": "readonly"}) == (
        200, {"mode": "READONLY"})
    assert await call(http, "GET", f"/mode/{subject}") == (200, {"mode": "READONLY"})
    for method, url, body in (
            ("POST", f"/subjects/{subject}/versions", {"schema": json.dumps(V2)}),
            ("DELETE", f"/subjects/{subject}", None),
            ("DELETE", f"/subjects/{subject}/versions/1", None),
            ("PUT", f"/config/{subject}", {"compatibility": "NONE"})):
        status, reply = await call(http, method, url, body)
        assert_error(status, reply, 422, 42205)
        assert "read-only" in reply["message"], reply
    # Reads, lookups, compatibility checks and re-registering what is there still work.
    assert await call(http, "GET", f"/subjects/{subject}/versions") == (200, [1])
    status, body = await call(http, "POST", f"/subjects/{subject}", {"schema": json.dumps(V1)})
    assert status == 200 and body["version"] == 1
    status, body = await call(http, "POST", f"/compatibility/subjects/{subject}/versions",
                              {"schema": json.dumps(V2)})
    assert (status, body["is_compatible"]) == (200, True)
    await register_ok(http, subject, V1)

    assert await call(http, "DELETE", f"/mode/{subject}") == (200, {"mode": "READONLY"})
    await register_ok(http, subject, V2)


async def test_global_read_only_and_subject_override(http: aiohttp.ClientSession) -> None:
    subject, free = unique("mode"), unique("mode")
    await register_ok(http, subject, V1)
    assert await call(http, "PUT", f"/mode/{free}", {"mode": "READWRITE"}) == (
        200, {"mode": "READWRITE"})
    try:
        assert await call(http, "PUT", "/mode", {"mode": "READONLY"}) == (
            200, {"mode": "READONLY"})
        status, body = await register(http, subject, V2)
        assert_error(status, body, 422, 42205)
        status, body = await call(http, "PUT", "/config", {"compatibility": "NONE"})
        assert_error(status, body, 422, 42205)
        assert await call(http, "GET", f"/mode/{subject}?defaultToGlobal=true") == (
            200, {"mode": "READONLY"})
        await register_ok(http, free, V1)  # its own READWRITE wins over the global mode
    finally:
        assert (await call(http, "PUT", "/mode", {"mode": "READWRITE"}))[0] == 200
    await register_ok(http, subject, V2)


async def test_produce_is_unaffected_by_read_only(http: aiohttp.ClientSession) -> None:
    topic = unique("modetopic")
    status, body = await put_topic(http, topic, entry())
    assert status == 200, body
    await call(http, "PUT", f"/mode/{topic}-value", {"mode": "READONLY"})
    record = {"widget_id": "w1", "version": 1, "name": "n", "clock": {}, "bad_clock": {}}
    async with http.post(f"/topics/{topic}/records", json=record) as resp:
        assert resp.status == 200, await resp.text()


async def test_listing_and_raw_schema_endpoints(http: aiohttp.ClientSession) -> None:
    prefix = unique("list")
    a, b = f"{prefix}-a", f"{prefix}-b"
    id1 = await register_ok(http, a, V1)
    id2 = await register_ok(http, a, V2)
    fresh = fresh_record()
    id_b = await register_ok(http, b, fresh)
    assert await call(http, "GET", f"/subjects?subjectPrefix={prefix}") == (200, [a, b])
    assert await call(http, "GET", f"/subjects?subjectPrefix={prefix}&offset=1&limit=1") == (
        200, [b])

    status, body = await call(http, "GET", f"/schemas?subjectPrefix={prefix}")
    assert status == 200
    assert [(s["subject"], s["version"]) for s in body] == [(a, 1), (a, 2), (b, 1)]
    assert all(set(s) == {"subject", "version", "id", "schema"} for s in body)
    status, body = await call(http, "GET", f"/schemas?subjectPrefix={prefix}&latestOnly=true")
    assert [(s["subject"], s["id"]) for s in body] == [(a, id2), (b, id_b)]
    await call(http, "DELETE", f"/subjects/{a}/versions/2")
    status, body = await call(http, "GET", f"/schemas?subjectPrefix={prefix}&latestOnly=true")
    assert [(s["subject"], s["id"]) for s in body][0] == (a, id1)
    status, body = await call(http, "GET", f"/schemas?subjectPrefix={prefix}&deleted=true")
    assert len(body) == 3

    async with http.get(f"/schemas/ids/{id_b}/schema") as resp:
        assert resp.status == 200 and json.loads(await resp.text()) == fresh
    assert await call(http, "GET", f"/schemas/ids/{id_b}/subjects") == (200, [b])
    status, body = await call(http, "GET", "/schemas/ids/999999999/subjects")
    assert_error(status, body, 404, 40403)
    assert await call(http, "GET", f"/subjects/{a}/versions/1/referencedby") == (200, [])
    status, body = await call(http, "GET", f"/subjects/{a}/versions/7/referencedby")
    assert_error(status, body, 404, 40402)
    status, body = await call(http, "GET", "/subjects?limit=x")
    assert status == 400, body


async def test_delete_global_config_answers_the_previous_level(
        http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", "/config")
    original = body["compatibilityLevel"]
    try:
        await call(http, "PUT", "/config", {"compatibility": "FULL"})
        assert await call(http, "DELETE", "/config") == (200, {"compatibilityLevel": "FULL"})
        assert await call(http, "GET", "/config?defaultToGlobal=true") == (
            200, {"compatibilityLevel": DEFAULT_COMPATIBILITY.value})
    finally:
        await call(http, "PUT", "/config", {"compatibility": original})


async def test_normalize_finds_a_respelled_schema(http: aiohttp.ClientSession) -> None:
    subject = unique("norm")
    given = {"type": "record", "name": "Item", "namespace": "shop",
             "fields": [{"name": "id", "type": {"type": "string"}}]}
    respelled = {"type": "record", "name": "shop.Item", "fields": [{"name": "id",
                                                                    "type": "string"}]}
    schema_id = await register_ok(http, subject, given)
    # Without normalize the spellings are different schemas; with it, the same.
    status, body = await call(http, "POST", f"/subjects/{subject}",
                              {"schema": json.dumps(respelled)})
    assert_error(status, body, 404, 40403)
    status, body = await call(http, "POST", f"/subjects/{subject}?normalize=true",
                              {"schema": json.dumps(respelled)})
    assert (status, body["id"]) == (200, schema_id), body
    status, body = await call(http, "POST", f"/subjects/{subject}/versions?normalize=true",
                              {"schema": json.dumps(respelled)})
    assert (status, body["id"]) == (200, schema_id), body
    assert await call(http, "GET", f"/subjects/{subject}/versions") == (200, [1])
    status, body = await call(http, "POST",
                              f"/compatibility/subjects/{subject}/versions?normalize=true",
                              {"schema": json.dumps(respelled)})
    assert (status, body["is_compatible"]) == (200, True)
