"""Subject and version deletes over real HTTP, in Confluent's order and with its codes.

Soft first (hidden, back with ``?deleted=true``), then ``?permanent=true``; 40404/40405/
40406/40407 when the order is broken. Ids are never freed: ``GET /schemas/ids/{id}``
answers after every version holding the id is gone (onepipe's documented deviation), and
the same schema registered again gets its old id. A registered topic's value subject
keeps its last live version (42205). Every test uses its own subjects on the shared worker.
"""

from __future__ import annotations

import json

import aiohttp

from tests.app.test_registry_api import (
    V1,
    V2,
    V3,
    assert_error,
    call,
    entry,
    fresh_record,
    put_topic,
    register_ok,
)
from tests.fixtures.services import unique


async def test_soft_then_permanent_subject_delete(http: aiohttp.ClientSession) -> None:
    subject = unique("del")
    id1, id2 = await register_ok(http, subject, V1), await register_ok(http, subject, V2)

    status, body = await call(http, "DELETE", f"/subjects/{subject}?permanent=true")
    assert_error(status, body, 404, 40405)
    assert "not deleted first" in body["message"]
    assert await call(http, "DELETE", f"/subjects/{subject}") == (200, [1, 2])

    # Hidden from listings and lookups ...
    status, subjects = await call(http, "GET", "/subjects")
    assert subject not in subjects
    for url in (f"/subjects/{subject}/versions", f"/subjects/{subject}/versions/1",
                f"/subjects/{subject}/versions/latest"):
        status, body = await call(http, "GET", url)
        assert_error(status, body, 404, 40401)
    status, body = await call(http, "POST", f"/subjects/{subject}", {"schema": json.dumps(V1)})
    assert_error(status, body, 404, 40401)
    # ... back with ?deleted=true.
    status, subjects = await call(http, "GET", "/subjects?deleted=true")
    assert subject in subjects
    status, deleted_only = await call(http, "GET", "/subjects?deletedOnly=true")
    assert subject in deleted_only
    assert await call(http, "GET", f"/subjects/{subject}/versions?deleted=true") == (200, [1, 2])
    status, body = await call(http, "GET", f"/subjects/{subject}/versions/2?deleted=true")
    assert (status, body["id"], body["version"]) == (200, id2, 2), body
    status, body = await call(http, "POST", f"/subjects/{subject}?deleted=true",
                              {"schema": json.dumps(V1)})
    assert (status, body["id"], body["version"]) == (200, id1, 1), body

    status, body = await call(http, "DELETE", f"/subjects/{subject}")
    assert_error(status, body, 404, 40404)
    assert await call(http, "DELETE", f"/subjects/{subject}?permanent=true") == (200, [1, 2])
    status, body = await call(http, "GET", f"/subjects/{subject}/versions?deleted=true")
    assert_error(status, body, 404, 40401)
    status, body = await call(http, "DELETE", f"/subjects/{subject}")
    assert_error(status, body, 404, 40401)

    # The ids stay answerable, and stay the schema's own.
    status, body = await call(http, "GET", f"/schemas/ids/{id1}")
    assert status == 200 and json.loads(body["schema"]) == V1
    status, body = await call(http, "GET", f"/schemas/ids/{id1}/versions?deleted=true")
    assert status == 200 and all(item["subject"] != subject for item in body), body
    assert await register_ok(http, subject, V1) == id1
    assert await call(http, "GET", f"/subjects/{subject}/versions") == (200, [1])


async def test_registering_after_a_soft_delete_continues_the_numbering(
        http: aiohttp.ClientSession) -> None:
    subject = unique("del")
    await register_ok(http, subject, V1)
    id2 = await register_ok(http, subject, V2)
    assert await call(http, "DELETE", f"/subjects/{subject}") == (200, [1, 2])
    id3 = await register_ok(http, subject, V3)
    assert id3 not in (id2,)
    assert await call(http, "GET", f"/subjects/{subject}/versions") == (200, [3])
    assert await call(http, "GET", f"/subjects/{subject}/versions?deleted=true") == (
        200, [1, 2, 3])
    # The soft-deleted V2 registered again: its old id, a new version, the old one gone.
    assert await register_ok(http, subject, V2) == id2
    assert await call(http, "GET", f"/subjects/{subject}/versions?deleted=true") == (
        200, [1, 3, 4])


async def test_version_deletes(http: aiohttp.ClientSession) -> None:
    subject = unique("del")
    id1 = await register_ok(http, subject, V1)
    await register_ok(http, subject, V2)
    await register_ok(http, subject, V3)

    status, body = await call(http, "DELETE", f"/subjects/{subject}/versions/2?permanent=true")
    assert_error(status, body, 404, 40407)
    assert await call(http, "DELETE", f"/subjects/{subject}/versions/2") == (200, 2)
    assert await call(http, "DELETE", f"/subjects/{subject}/versions/latest") == (200, 3)
    assert await call(http, "GET", f"/subjects/{subject}/versions") == (200, [1])
    status, body = await call(http, "GET", f"/subjects/{subject}/versions/latest")
    assert (status, body["version"], body["id"]) == (200, 1, id1)
    status, body = await call(http, "GET", f"/subjects/{subject}/versions/2")
    assert_error(status, body, 404, 40402)
    status, body = await call(http, "DELETE", f"/subjects/{subject}/versions/2")
    assert_error(status, body, 404, 40406)
    status, body = await call(http, "DELETE", f"/subjects/{subject}/versions/9")
    assert_error(status, body, 404, 40402)
    status, body = await call(http, "DELETE", f"/subjects/{subject}/versions/abc")
    assert_error(status, body, 422, 42202)
    status, body = await call(http, "DELETE", f"/subjects/{unique('nope')}/versions/1")
    assert_error(status, body, 404, 40401)

    assert await call(http, "DELETE", f"/subjects/{subject}/versions/3?permanent=true") == (
        200, 3)
    assert await call(http, "GET", f"/subjects/{subject}/versions?deleted=true") == (
        200, [1, 2])
    assert await call(http, "GET", f"/subjects/{subject}/versions?deletedOnly=true") == (
        200, [2])


async def test_schema_ids_outlive_their_versions(http: aiohttp.ClientSession) -> None:
    subject, other = unique("del"), unique("del")
    schema = fresh_record()
    schema_id = await register_ok(http, subject, schema)
    await register_ok(http, other, schema)
    assert await call(http, "DELETE", f"/subjects/{subject}/versions/1") == (200, 1)
    assert await call(http, "GET", f"/schemas/ids/{schema_id}/subjects") == (200, [other])
    status, body = await call(http, "GET", f"/schemas/ids/{schema_id}/subjects?deleted=true")
    assert status == 200 and sorted(body) == sorted([subject, other])
    assert await call(http, "GET", f"/schemas/ids/{schema_id}/versions") == (
        200, [{"subject": other, "version": 1}])
    for s in (subject, other):
        await call(http, "DELETE", f"/subjects/{s}")
        assert (await call(http, "DELETE", f"/subjects/{s}?permanent=true"))[0] == 200
    assert await call(http, "GET", f"/schemas/ids/{schema_id}/subjects") == (200, [])
    async with http.get(f"/schemas/ids/{schema_id}/schema") as resp:
        assert resp.status == 200 and json.loads(await resp.text()) == schema


async def test_a_topic_subject_keeps_its_last_live_version(http: aiohttp.ClientSession) -> None:
    topic = unique("deltopic")
    status, body = await put_topic(http, topic, entry())
    assert status == 200, body
    subject = f"{topic}-value"
    for url in (f"/subjects/{subject}", f"/subjects/{subject}/versions/1",
                f"/subjects/{subject}/versions/latest"):
        status, body = await call(http, "DELETE", url)
        assert_error(status, body, 422, 42205)
        assert "registered topic" in body["message"], body
    assert await call(http, "GET", f"/subjects/{subject}/versions") == (200, [1])
