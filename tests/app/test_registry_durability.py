"""The registry lives in its Kafka log: it survives restarts, and workers agree on ids.

Each test runs its own worker runtimes on a registry topic of its own (not the shared
runtime), on the session's tansu broker. Replay must read to the fetch high watermark:
tansu's ListOffsets(latest) stops short after multi-batch writes (DESIGN.md), which these
tests would notice as missing versions after a restart.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from onepipe.app.runtime import Runtime
from onepipe.app.settings import Settings
from tests.fixtures.services import unique, wait_for


def record(name: str, *fields: tuple[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": name,
            "fields": [{"name": n, "type": t} for n, t in fields]}


@asynccontextmanager
async def worker(settings: Settings) -> AsyncIterator[tuple[Runtime, aiohttp.ClientSession]]:
    """A started runtime and an HTTP client for its API."""
    async with Runtime(settings) as runtime, aiohttp.ClientSession(
            base_url=f"http://127.0.0.1:{runtime.web.port}") as http:
        yield runtime, http


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None
               ) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def register(http: aiohttp.ClientSession, subject: str, schema: Any) -> int:
    status, body = await call(http, "POST", f"/subjects/{subject}/versions",
                              {"schema": json.dumps(schema)})
    assert status == 200, (subject, status, body)
    return int(body["id"])


def snapshot(runtime: Runtime) -> dict[str, Any]:
    """Everything a client can see of the registry state, comparable across workers."""
    state = runtime.registry.state
    return {
        "schemas": {i: s.identity for i, s in state.schemas_by_id.items()},
        "subjects": {s: list(ids) for s, ids in state.subjects.items()},
        "configs": {s: c.value for s, c in state.configs.items()},
        "topics": dict(state.topics),
    }


async def http_view(http: aiohttp.ClientSession) -> dict[str, Any]:
    """The same state as the REST API shows it."""
    status, subjects = await call(http, "GET", "/subjects")
    assert status == 200
    view: dict[str, Any] = {"subjects": {}, "config": await call(http, "GET", "/config")}
    for subject in subjects:
        status, versions = await call(http, "GET", f"/subjects/{subject}/versions")
        assert status == 200
        view["subjects"][subject] = [
            (await call(http, "GET", f"/subjects/{subject}/versions/{v}"))[1] for v in versions]
        view[f"config/{subject}"] = await call(http, "GET", f"/config/{subject}")
    status, topics = await call(http, "GET", "/topics")
    view["topics"] = {t: await call(http, "GET", f"/topics/{t}/metadata") for t in topics}
    return view


async def caught_up(*runtimes: Runtime) -> None:
    """Wait until every runtime applied the same, latest log offset."""
    end = max(r.registry.state.applied_offset for r in runtimes)
    await wait_for(lambda: all(r.registry.state.applied_offset >= end for r in runtimes),
                   timeout=20, what="workers to apply the registry log to its end")


async def test_state_survives_a_restart(make_settings: Callable[..., Settings]) -> None:
    registry_topic = unique("_reg")
    subject, topic = unique("durable"), unique("durable-topic")
    v1 = record("Item", ("id", "string"))
    v2 = {**v1, "fields": [*v1["fields"], {"name": "a", "type": "int", "default": 0}]}
    v3 = {**v2, "fields": [*v2["fields"], {"name": "b", "type": "string", "default": ""}]}
    topic_schema = record("Thing", ("thing_id", "string"), ("version", "long"))

    async with worker(make_settings(registry_topic=registry_topic)) as (first, http):
        ids = [await register(http, subject, s) for s in (v1, v2, v3)]
        assert (await call(http, "PUT", f"/config/{subject}", {"compatibility": "FULL"}))[0] == 200
        assert (await call(http, "PUT", "/config", {"compatibility": "FORWARD"}))[0] == 200
        status, applied = await call(http, "PUT", f"/topics/{topic}/metadata", {
            "schema": topic_schema, "key": ["thing_id"],
            "order": {"rule": "max", "field": "version"}, "partitions": 3})
        assert status == 200, applied
        before_state, before_http = snapshot(first), await http_view(http)
        before_offset = first.registry.state.applied_offset
    assert len(set(ids)) == 3
    assert before_state["configs"] == {subject: "FULL", None: "FORWARD",
                                       f"{topic}-value": "BACKWARD_TRANSITIVE"}
    assert topic in before_state["topics"]

    async with worker(make_settings(registry_topic=registry_topic)) as (second, http):
        assert second.registry.state.applied_offset == before_offset
        assert snapshot(second) == before_state
        assert await http_view(http) == before_http
        assert (await call(http, "GET", f"/subjects/{subject}/versions")) == (200, [1, 2, 3])
        # The restarted worker continues the numbering: version 4, an id nobody had.
        v4 = {**v3, "fields": [*v3["fields"], {"name": "c", "type": "long", "default": 0}]}
        new_id = await register(http, subject, v4)
        assert new_id not in before_state["schemas"]
        assert (await call(http, "GET", f"/subjects/{subject}/versions/latest"))[1]["version"] == 4


async def test_two_workers_never_hand_out_different_ids(
        make_settings: Callable[..., Settings]) -> None:
    registry_topic = unique("_reg")
    async with worker(make_settings(registry_topic=registry_topic)) as (a, http_a), \
            worker(make_settings(registry_topic=registry_topic)) as (b, http_b):
        # Any schema may follow any other here: the test is about ids, not compatibility.
        assert (await call(http_a, "PUT", "/config", {"compatibility": "NONE"}))[0] == 200
        await caught_up(a, b)
        assert b.registry.state.compatibility(None).value == "NONE"

        subjects = [unique("race") for _ in range(4)]
        log_start = a.registry.state.applied_offset
        jobs = []
        for i in range(20):
            schema = record(f"R{i}", ("id", "string"), (f"f{i}", "long"))
            http = http_a if i % 2 == 0 else http_b
            jobs.append((http, subjects[i % len(subjects)], schema))
        ids = await asyncio.gather(*(register(h, s, schema) for h, s, schema in jobs))
        await caught_up(a, b)

        assert snapshot(a) == snapshot(b)
        state = a.registry.state
        assert len(set(ids)) == 20, f"20 different schemas got ids {ids}"
        # A worker loses a race only to a decision the other worker got accepted, so 20
        # registrations cost at most 40 appends (not one retry per waiting request).
        appended = state.applied_offset - log_start
        assert 20 <= appended <= 40, f"20 registrations took {appended} log records"
        assert sorted(state.schemas_by_id) == sorted(ids)
        # Every id maps to exactly one schema and back.
        assert len(set(state.id_by_identity.values())) == len(state.id_by_identity) == 20
        assert {state.id_by_identity[s.identity] for s in state.schemas_by_id.values()} == set(ids)
        # Every subject holds exactly the registrations sent to it, one version each.
        for subject in subjects:
            expected = sorted(ids[i] for i, (_, s, _) in enumerate(jobs) if s == subject)
            assert sorted(state.subjects[subject]) == expected
        # The id each worker returned is what the other worker reports for that schema.
        for (http, subject, schema), schema_id in zip(jobs, ids, strict=True):
            other = http_b if http is http_a else http_a
            status, found = await call(other, "POST", f"/subjects/{subject}",
                                       {"schema": json.dumps(schema)})
            assert status == 200, found
            assert found["id"] == schema_id, (subject, found, schema_id)
            status, by_id = await call(other, "GET", f"/schemas/ids/{schema_id}")
            assert status == 200 and json.loads(by_id["schema"]) == schema

        # The same new schema through both workers at once: one id, one version per subject.
        same = record("Same", ("id", "string"), ("both", "long"))
        target = subjects[0]
        got: list[int] = list(await asyncio.gather(register(http_a, target, same),
                                                   register(http_b, target, same)))
        assert got[0] == got[1], got
        # ... and into two new subjects at once: still the one id.
        got += await asyncio.gather(register(http_a, unique("race"), same),
                                    register(http_b, unique("race"), same))
        assert len(set(got)) == 1, got
        await caught_up(a, b)
        assert snapshot(a) == snapshot(b)
        assert a.registry.state.subjects[target].count(got[0]) == 1


async def test_concurrent_registrations_on_one_worker(runtime: Runtime,
                                                      http: aiohttp.ClientSession) -> None:
    """Many registrations at once on one worker each take one version and one append."""
    subject = unique("burst")
    status, body = await call(http, "PUT", f"/config/{subject}", {"compatibility": "NONE"})
    assert status == 200, body
    log_start = runtime.registry.state.applied_offset
    schemas = [record(f"Burst{i}", ("id", "string"), (f"g{i}", "int")) for i in range(30)]
    ids = await asyncio.gather(*(register(http, subject, s) for s in schemas))
    assert len(set(ids)) == 30
    status, versions = await call(http, "GET", f"/subjects/{subject}/versions")
    assert (status, versions) == (200, list(range(1, 31)))
    state = runtime.registry.state
    assert sorted(state.subjects[subject]) == sorted(ids)
    # Decisions of one worker never race each other: one log record per registration.
    assert state.applied_offset - log_start == 30
