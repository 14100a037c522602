"""A broker that loses its log under a running worker: the worker notices through its
registry log, stops acknowledging produce requests (503 with the reason) and stops its
agents, instead of archiving a new log's offsets beside the old log's files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import aiohttp

from onepipe.app.catalog import apply_catalog
from onepipe.app.embedded import EmbeddedBroker
from onepipe.app.runtime import Runtime
from onepipe.app.settings import Settings
from tests.fixtures.services import wait_for


async def test_a_lost_log_stops_acknowledging_and_stops_the_agents(
        own_broker: EmbeddedBroker, make_settings: Callable[..., Settings],
        tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "events.avsc").write_text(json.dumps({
        "type": "record", "name": "Event", "fields": [{"name": "id", "type": "string"}]}))
    (catalog / "events.yaml").write_text(
        "topic: events\nschema: events.avsc\npartitions: 2\n"
        "archive: {flush_records: 10, flush_seconds: 0.2}\n")
    settings = make_settings(broker=own_broker.bootstrap, archive_enabled=True,
                             lake_url=(tmp_path / "lake").as_uri())
    async with Runtime(settings) as runtime:
        await apply_catalog(runtime.registry, catalog)
        url = f"http://127.0.0.1:{runtime.web.port}"
        async with aiohttp.ClientSession(url) as http:

            async def produce() -> aiohttp.ClientResponse:
                async with http.post("/topics/events/records",
                                     json={"records": [{"id": str(i)} for i in range(20)]}
                                     ) as resp:
                    await resp.read()
                    return resp

            assert (await produce()).status == 200
            archive = runtime.archive
            assert archive is not None
            await wait_for(lambda: sum(archive.metrics.positions.values()) == 20,
                           timeout=60, what="the first records archived")
            own_broker.stop()
            own_broker.start()  # the same address, nothing in it
            await wait_for(lambda: runtime.registry.lost_log is not None, timeout=60,
                           what="the worker to notice the lost log")
            await wait_for(lambda: runtime.agents_stopped, timeout=30,
                           what="the agents to stop")
            async with http.post("/topics/events/records",
                                 json={"records": [{"id": "late"}]}) as resp:
                body = await resp.json()
                assert resp.status == 503, body
                assert "lost its log" in body["message"]
                assert resp.headers["Retry-After"]
            async with http.get("/readyz") as resp:
                assert resp.status == 503
