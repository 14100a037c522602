"""`onepipe lake ls` and `onepipe replay` as a user runs them, on a lake the agent wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from onepipe.app.runtime import Runtime
from onepipe.sinks.lake import open_lake
from tests.fixtures.archive import (
    PARTITIONS,
    SCHEMA_V2,
    agent_for,
    count_is,
    make_topic,
    order,
    produce,
)
from tests.fixtures.services import unique, wait_for
from tests.fixtures.topics import create_topic, read_topic

ONEPIPE = str(Path(sys.executable).with_name("onepipe"))


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ONEPIPE, *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


async def test_lake_ls_and_replay_commands(
    runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path, broker: str
) -> None:
    lake_url = (tmp_path / "lake").as_uri()
    topic = await make_topic(http)
    await produce(http, topic, [order(i) for i in range(75)])
    async with open_lake(lake_url) as lake, agent_for(runtime, lake, topic):
        await wait_for(lambda: count_is(lake, topic, 75), timeout=60, what="75 rows")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEPIPE_")}
    env.update(ONEPIPE_BROKER=broker, ONEPIPE_LAKE_URL=lake_url,
               ONEPIPE_IDEMPOTENT_PRODUCER="false", COLUMNS="120")

    listing = run(env, "lake", "ls", topic)
    assert listing.returncode == 0, listing.stderr
    assert "75 record(s)" in listing.stdout
    today = datetime.now(tz=UTC).strftime("%Y-%m-%d")
    assert listing.stdout.count(today) == PARTITIONS  # one row per partition and day

    refused = run(env, "replay", topic)
    assert refused.returncode == 2
    assert "--to-topic" in refused.stderr and "Traceback" not in refused.stderr
    into_itself = run(env, "replay", topic, "--to-topic", topic)
    assert into_itself.returncode == 2 and "--into-source" in into_itself.stderr

    target = unique("copy")
    await create_topic(http, target, SCHEMA_V2, partitions=PARTITIONS, key=["order_id"],
                       order={"rule": "max", "field": "version"})
    replayed = run(env, "replay", topic, "--to-topic", target, "--partition", "0",
                   "--partition", "2")
    assert replayed.returncode == 0, replayed.stderr
    source, _ = await read_topic(broker, topic, PARTITIONS)
    expected = len(source[0]) + len(source[2])
    assert f"replayed {expected} record(s)" in replayed.stdout
    copied, _ = await read_topic(broker, target, PARTITIONS)
    assert len(copied[1]) == 0
    assert [r.value for r in copied[0]] == [r.value for r in source[0]]

    # A time window that holds none of the records replays nothing.
    empty = run(env, "replay", topic, "--to-topic", target, "--to", "2001-01-01T00:00:00Z")
    assert empty.returncode == 0 and "replayed 0 record(s)" in empty.stdout
    bad_time = run(env, "replay", topic, "--to-topic", target, "--from", "yesterday")
    assert bad_time.returncode == 2 and "ISO-8601" in bad_time.stderr
