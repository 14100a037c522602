"""Every Avro compatibility vector through the registry's HTTP API (shared/testdata).

The same 261 cases test the pure rules in tests/schemas/test_compatibility.py; here they go
through the Confluent REST endpoints a client uses, against the shared worker runtime:

- pairs: the writer is version 1 of a fresh subject; the reader is checked against it
  with ``POST /compatibility/subjects/{s}/versions/latest`` under BACKWARD (the new schema
  must read data of the latest), so ``is_compatible`` is "can reader read writer's data".
- sequences: ``existing`` is registered under NONE, the case's mode is set, and ``new``
  is registered: 200 and a new version, or 409 and the subject unchanged.

No case may ever answer 500; a schema the registry refuses must be 42201.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fixtures.services import SHARED, unique

VECTORS: dict[str, Any] = json.loads(
    (Path(SHARED) / "testdata" / "avro_compat_vectors.json").read_text()
)


def _id(case: dict[str, Any]) -> str:
    return str(case["id"])


async def _call(http: aiohttp.ClientSession, method: str, url: str, case_id: str,
                body: Any = None) -> tuple[int, Any]:
    """Status and JSON body of one request; never a 500, and a refusal is Confluent's shape."""
    async with http.request(method, url, json=body) as resp:
        status = resp.status
        data = await resp.json(content_type=None)
    assert status < 500, f"{case_id}: {method} {url} answered {status}: {data}"
    if status == 422:
        assert data.get("error_code") == 42201, (
            f"{case_id}: {method} {url} refused a schema without 42201: {data}")
    return status, data


async def _set_mode(http: aiohttp.ClientSession, subject: str, mode: str, case_id: str) -> None:
    status, body = await _call(http, "PUT", f"/config/{subject}", case_id,
                               {"compatibility": mode})
    assert (status, body) == (200, {"compatibility": mode}), f"{case_id}: {status} {body}"


async def _register(http: aiohttp.ClientSession, subject: str, schema: Any,
                    case_id: str) -> tuple[int, Any]:
    return await _call(http, "POST", f"/subjects/{subject}/versions", case_id,
                       {"schema": json.dumps(schema)})


async def _versions(http: aiohttp.ClientSession, subject: str, case_id: str) -> list[int]:
    status, body = await _call(http, "GET", f"/subjects/{subject}/versions", case_id)
    assert status == 200, f"{case_id}: listing versions of {subject} answered {status}: {body}"
    return list(body)


def test_vector_counts() -> None:
    """The README's counts: a shrunken file would silently test less."""
    assert len(VECTORS["pairs"]) == 203
    assert len(VECTORS["sequences"]) == 58
    assert sum(c["compatible"] for c in VECTORS["pairs"]) == 113


@pytest.mark.parametrize("case", VECTORS["pairs"], ids=_id)
async def test_pair(http: aiohttp.ClientSession, case: dict[str, Any]) -> None:
    cid = case["id"]
    subject = unique("pair")
    await _set_mode(http, subject, "NONE", cid)
    status, body = await _register(http, subject, case["writer"], cid)
    assert status == 200, f"{cid}: registering the writer answered {status}: {body}"
    assert isinstance(body.get("id"), int), f"{cid}: {body}"
    await _set_mode(http, subject, "BACKWARD", cid)

    status, body = await _call(
        http, "POST", f"/compatibility/subjects/{subject}/versions/latest", cid,
        {"schema": json.dumps(case["reader"])})
    assert status == 200, f"{cid}: compatibility check answered {status}: {body}"
    assert body["is_compatible"] is case["compatible"], (
        f"{cid}: expected is_compatible={case['compatible']}, got {body} "
        f"(origin: {case['origin']})")
    if not case["compatible"]:
        assert body.get("messages"), f"{cid}: an incompatible answer must say why: {body}"


@pytest.mark.parametrize("case", VECTORS["sequences"], ids=_id)
async def test_sequence(http: aiohttp.ClientSession, case: dict[str, Any]) -> None:
    cid = case["id"]
    subject = unique("seq")
    await _set_mode(http, subject, "NONE", cid)
    ids = []
    for schema in case["existing"]:
        status, body = await _register(http, subject, schema, cid)
        assert status == 200, f"{cid}: registering an existing version answered {status}: {body}"
        ids.append(body["id"])
    before = await _versions(http, subject, cid)
    # Equal schemas in `existing` collapse into one version (registration is idempotent).
    assert len(before) == len(dict.fromkeys(ids)), f"{cid}: {before} for ids {ids}"
    await _set_mode(http, subject, case["mode"], cid)

    status, body = await _register(http, subject, case["new"], cid)
    after = await _versions(http, subject, cid)
    if case["compatible"]:
        assert status == 200, (
            f"{cid}: compatible under {case['mode']} but answered {status}: {body} "
            f"(origin: {case['origin']})")
        if case["new"] in case["existing"]:
            # Re-registering a schema the subject holds is idempotent (Confluent): same id,
            # no new version.
            assert body["id"] in ids, f"{cid}: re-registration gave id {body['id']}, not {ids}"
            assert after == before, f"{cid}: re-registration changed {before} -> {after}"
            return
        assert after == [*before, len(before) + 1], f"{cid}: versions {before} -> {after}"
        status, latest = await _call(http, "GET", f"/subjects/{subject}/versions/latest", cid)
        assert status == 200, f"{cid}: {latest}"
        assert latest["id"] == body["id"], f"{cid}: latest {latest} vs registered {body}"
    else:
        assert status == 409, (
            f"{cid}: incompatible under {case['mode']} but answered {status}: {body} "
            f"(origin: {case['origin']})")
        assert body["error_code"] == 409, f"{cid}: {body}"
        assert after == before, f"{cid}: a refused schema changed versions {before} -> {after}"


async def test_unacceptable_schema_is_42201(http: aiohttp.ClientSession) -> None:
    """A vector schema broken on purpose (a field of an undefined type) is refused, not a 500."""
    writer = json.loads(json.dumps(VECTORS["pairs"][0]["writer"]))
    assert writer["type"] == "record"
    writer["fields"][0]["type"] = "NoSuchNamedType"
    subject = unique("pair")
    async with http.post(f"/subjects/{subject}/versions",
                         json={"schema": json.dumps(writer)}) as resp:
        assert resp.status == 422
        body = await resp.json(content_type=None)
    assert body["error_code"] == 42201
    async with http.get(f"/subjects/{subject}/versions") as resp:
        assert resp.status == 404
        assert (await resp.json(content_type=None))["error_code"] == 40401
