"""`kill -9` of a worker while it deduplicates: after a restart no winner is lost and
``<topic>.unique`` never goes back in rank for any key.

A real `onepipe worker` process (dedup on, archive off) deduplicates a topic that the test
keeps producing to through the worker's own HTTP API, with random versions (so there are
duplicates and out-of-order versions); the test kills it with SIGKILL while batches are
in flight, starts a new worker on the same data dir, and checks ``.unique`` against the
winners computed independently from the source topic.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from onepipe.schemas.topic_names import dedup_group, unique_topic
from tests.fixtures.dedup import check_unique, expected_outcome
from tests.fixtures.services import unique, wait_for
from tests.fixtures.topics import committed_offsets, read_topic
from tests.fixtures.worker_process import GROUP_TIMEOUTS, WorkerProcess, kill_while_producing

PARTITIONS = 2
SCHEMA = {"type": "record", "name": "Item", "namespace": "test.dedup", "fields": [
    {"name": "id", "type": "string"}, {"name": "version", "type": "long"},
    {"name": "payload", "type": "string"}]}


@pytest.fixture
def crash_env(broker: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], str, Path]]:
    topic = unique("ddcrash")
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "crash.avsc").write_text(json.dumps(SCHEMA))
    (catalog / "crash.yaml").write_text(
        f"topic: {topic}\nschema: crash.avsc\npartitions: {PARTITIONS}\nkey: [id]\n"
        "order: {rule: max, field: version}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEPIPE_")}
    env.update(ONEPIPE_BROKER=broker, ONEPIPE_REGISTRY_TOPIC=unique("_registry"),
               ONEPIPE_IDEMPOTENT_PRODUCER="false", ONEPIPE_DATA_DIR=str(tmp_path / "data"),
               **GROUP_TIMEOUTS,
               ONEPIPE_APP_ID=unique("ddcrashapp"), ONEPIPE_CATALOG_DIR=str(catalog),
               ONEPIPE_ARCHIVE_ENABLED="false", ONEPIPE_DEDUP_ENABLED="true",
               ONEPIPE_COMPACT_WORKERS_ENABLED="false")
    yield env, topic, tmp_path


async def test_sigkill_while_deduplicating_loses_and_regresses_nothing(
    crash_env: tuple[dict[str, str], str, Path], broker: str
) -> None:
    env, topic, tmp_path = crash_env
    rng = random.Random(3)
    group = dedup_group(env["ONEPIPE_APP_ID"])

    async def produce(url: str, count: int) -> None:
        records = [{"id": f"k{rng.randint(0, 59)}", "version": rng.randint(0, 40),
                    "payload": "x" * rng.randint(1, 3)} for _ in range(count)]
        async with aiohttp.ClientSession(url) as http, http.post(
                f"/topics/{topic}/records", json={"records": records}) as resp:
            assert resp.status == 200, await resp.text()

    async def winners_flow() -> bool:
        _, watermarks = await read_topic(broker, unique_topic(topic), PARTITIONS)
        return sum(watermarks.values()) > 10

    await kill_while_producing(env, tmp_path / "worker-1.log", lambda url: produce(url, 40),
                               winners_flow, what="first winners")

    second = WorkerProcess(env, tmp_path / "worker-2.log")
    try:
        await wait_for(second.healthy, timeout=60, what="restarted worker")
        for _ in range(5):
            await produce(second.url, 40)
        source, watermarks = await read_topic(broker, topic, PARTITIONS)

        async def all_committed() -> bool:
            return await committed_offsets(broker, group, topic, PARTITIONS) == watermarks

        await wait_for(all_committed, timeout=90, what="every offset deduplicated")
    finally:
        second.stop()
    assert sum(watermarks.values()) == 40 * 9
    out, _ = await read_topic(broker, unique_topic(topic), PARTITIONS)
    check_unique("max", out, expected_outcome("max", source).winners)
