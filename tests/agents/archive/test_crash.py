"""`kill -9` of a worker while it archives: after a restart every offset is in the lake once.

A real `onepipe worker` process archives a topic that the test keeps producing to through
the worker's own HTTP API; the test kills it with SIGKILL at a moment when files are
being written, starts a new worker on the same data and lake, and checks the lake.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from onepipe.sinks.lake import open_lake
from onepipe.sinks.lake.inventory import raw_inventory
from tests.fixtures.paths import REPO
from tests.fixtures.services import unique, wait_for
from tests.fixtures.topics import read_topic
from tests.fixtures.worker_process import GROUP_TIMEOUTS, WorkerProcess

PARTITIONS = 2


@pytest.fixture
def crash_env(broker: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], str, Path]]:
    topic = unique("crash")
    catalog = tmp_path / "catalog"
    shutil.copytree(REPO / "catalog", catalog)
    (catalog / "crash.avsc").write_text(json.dumps({
        "type": "record", "name": "Event", "fields": [
            {"name": "id", "type": "string"}, {"name": "n", "type": "long"},
            {"name": "payload", "type": "string"}]}))
    (catalog / "crash.yaml").write_text(
        f"topic: {topic}\nschema: crash.avsc\npartitions: {PARTITIONS}\nkey: [id]\n"
        "order: {rule: max, field: n}\n"
        "archive: {flush_records: 25, flush_seconds: 0.3}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEPIPE_")}
    env.update(ONEPIPE_BROKER=broker, ONEPIPE_REGISTRY_TOPIC=unique("_registry"),
               ONEPIPE_IDEMPOTENT_PRODUCER="false", ONEPIPE_DATA_DIR=str(tmp_path / "data"),
               **GROUP_TIMEOUTS,
               ONEPIPE_APP_ID=unique("crashapp"), ONEPIPE_CATALOG_DIR=str(catalog),
               ONEPIPE_LAKE_URL=(tmp_path / "lake").as_uri(), ONEPIPE_DEDUP_ENABLED="false",
               ONEPIPE_COMPACT_WORKERS_ENABLED="false")
    yield env, topic, tmp_path


async def test_sigkill_while_archiving_loses_and_duplicates_nothing(
    crash_env: tuple[dict[str, str], str, Path], broker: str
) -> None:
    env, topic, tmp_path = crash_env
    lake_url = env["ONEPIPE_LAKE_URL"]
    sent = 0

    async def produce(url: str, count: int) -> None:
        nonlocal sent
        records = [{"id": f"k{(sent + i) % 50}", "n": sent + i, "payload": "x" * 150}
                   for i in range(count)]
        async with aiohttp.ClientSession(url) as http, http.post(
                f"/topics/{topic}/records", json={"records": records}) as resp:
            assert resp.status == 200, await resp.text()
        sent += count

    async with open_lake(lake_url) as lake:

        async def archived() -> int:
            return (await raw_inventory(lake, topic)).records

        first = WorkerProcess(env, tmp_path / "worker-1.log")
        try:
            await wait_for(first.healthy, timeout=60, what="first worker")
            # Keep producing until the lake has files, then kill mid-stream.
            while await archived() < 150:
                await produce(first.url, 20)
            await produce(first.url, 20)
            encoders = first.children()
            assert encoders, "the worker runs its archive encoder in a child process"
            first.kill()
            # The encoders must not outlive a worker killed without a chance to stop them.
            await wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in encoders),
                           timeout=10, what="encoder processes to exit with the worker")
        finally:
            first.kill()

        second = WorkerProcess(env, tmp_path / "worker-2.log")
        try:
            await wait_for(second.healthy, timeout=60, what="restarted worker")
            for _ in range(10):
                await produce(second.url, 20)

            async def all_archived() -> bool:
                return await archived() == sent

            await wait_for(all_archived, timeout=120, what=f"{sent} archived rows")
        finally:
            second.stop()

        inventory = await raw_inventory(lake, topic)
    assert inventory.gaps == {}
    _, watermarks = await read_topic(broker, topic, PARTITIONS)
    assert sum(watermarks.values()) == sent
    for partition, highwater in watermarks.items():
        files = [f for f in inventory.files if f.partition == partition]
        assert files[0].first == 0 and files[-1].last == highwater - 1
