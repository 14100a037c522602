"""Stopping is bounded: a worker (and `onepipe dev` with its broker) exits within
``ONEPIPE_STOP_TIMEOUT_SECONDS`` of SIGTERM or Ctrl-C, leaves no process behind, and a
restart after a stop in mid-stream neither loses nor repeats a record.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from onepipe.app.stopping import EXIT_STOP_TIMEOUT, running
from onepipe.schemas.topic_names import dedup_group, repartition_topic, unique_topic
from onepipe.sinks.lake import open_lake
from onepipe.sinks.lake.inventory import raw_inventory
from onepipe.tables.offsets import OffsetReader
from tests.fixtures.dev_process import DevProcess, command, descendants, dev_env
from tests.fixtures.services import kafka_for, unique, wait_for
from tests.fixtures.topics import read_topic
from tests.fixtures.worker_process import GROUP_TIMEOUTS, WorkerProcess

PARTITIONS = 2
#: The bound the tests set; the process must be gone this long after the signal, plus the
#: time an interpreter takes to exit (the contract is the bound, not a speed).
BOUND = 6.0
EXIT_SLACK = 6.0


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Seconds until ``proc`` exited; fails the test (after killing it) past ``timeout``."""
    start = time.monotonic()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"still running {timeout:.0f} s after the stop signal") from None
    return time.monotonic() - start


@pytest.fixture
def stop_env(broker: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    topic = unique("stop")
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "stop.avsc").write_text(json.dumps({
        "type": "record", "name": "Event", "fields": [
            {"name": "id", "type": "string"}, {"name": "n", "type": "long"},
            {"name": "payload", "type": "string"}]}))
    (catalog / "stop.yaml").write_text(
        f"topic: {topic}\nschema: stop.avsc\npartitions: {PARTITIONS}\nkey: [id]\n"
        "order: {rule: max, field: n}\n"
        "archive: {flush_records: 200, flush_seconds: 0.5}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEPIPE_")}
    env.update(ONEPIPE_BROKER=broker, ONEPIPE_REGISTRY_TOPIC=unique("_registry"),
               ONEPIPE_IDEMPOTENT_PRODUCER="false", ONEPIPE_DATA_DIR=str(tmp_path / "data"),
               **GROUP_TIMEOUTS,
               ONEPIPE_APP_ID=unique("stopapp"), ONEPIPE_CATALOG_DIR=str(catalog),
               ONEPIPE_LAKE_URL=(tmp_path / "lake").as_uri(),
               ONEPIPE_STOP_TIMEOUT_SECONDS=str(BOUND),
               ONEPIPE_COMPACT_WORKERS_ENABLED="false", ONEPIPE_SINKS_ENABLED="false")
    yield env, topic


async def test_sigterm_mid_stream_exits_within_the_bound_and_a_restart_repeats_nothing(
    stop_env: tuple[dict[str, str], str], broker: str, tmp_path: Path
) -> None:
    env, topic = stop_env
    acknowledged = 0
    sending = True

    async def produce(url: str) -> None:
        """Send batches until told to stop or the worker stops answering."""
        nonlocal acknowledged
        async with aiohttp.ClientSession(url) as http:
            while sending:
                records = [{"id": f"k{(acknowledged + i) % 300}", "n": acknowledged + i,
                            "payload": "x" * 100} for i in range(100)]
                try:
                    async with http.post(f"/topics/{topic}/records",
                                         json={"records": records}) as resp:
                        if resp.status != 200:
                            return
                except aiohttp.ClientError:
                    return
                acknowledged += len(records)

    first = WorkerProcess(env, tmp_path / "worker-1.log")
    try:
        await wait_for(first.healthy, timeout=60, what="first worker")
        producer = asyncio.create_task(produce(first.url))
        async with open_lake(env["ONEPIPE_LAKE_URL"]) as lake:

            async def archiving() -> bool:
                return (await raw_inventory(lake, topic)).records > 1000

            await wait_for(archiving, timeout=60, what="the archive to write files")
        first.proc.send_signal(signal.SIGTERM)  # the producer is still sending
        took = await asyncio.to_thread(_wait_exit, first.proc, BOUND + EXIT_SLACK)
        sending = False
        await producer
    finally:
        first.kill()
    log = (tmp_path / "worker-1.log").read_text()
    assert "Traceback" not in log, log[-4000:]
    print(f"worker exited {took:.1f} s after SIGTERM (bound {BOUND} s), code "
          f"{first.proc.returncode}; {acknowledged} records acknowledged")

    second = WorkerProcess(env, tmp_path / "worker-2.log")
    try:
        await wait_for(second.healthy, timeout=60, what="restarted worker")
        async with open_lake(env["ONEPIPE_LAKE_URL"]) as lake:

            async def all_archived() -> bool:
                return (await raw_inventory(lake, topic)).records >= acknowledged

            await wait_for(all_archived, timeout=120, what=f"{acknowledged} archived rows")
            _, watermarks = await read_topic(broker, topic, PARTITIONS)

            async def caught_up() -> bool:
                return (await raw_inventory(lake, topic)).records == sum(watermarks.values())

            await wait_for(caught_up, timeout=60, what="the whole topic archived")
            inventory = await raw_inventory(lake, topic)
        # The archive caught up says nothing of dedup, whose group may join later: wait
        # until it committed the whole topic (a join during the first worker's stop can
        # leave all of .unique to the second).
        async with OffsetReader(kafka_for(broker), timeout=20) as offsets:

            async def deduplicated() -> bool:
                found = await offsets.group_offsets(dedup_group(env["ONEPIPE_APP_ID"]),
                                                    [topic, repartition_topic(topic)])
                return bool(found) and not any(p.lag for p in found)

            await wait_for(deduplicated, timeout=60, what="dedup to commit the whole topic")
        winners, _ = await read_topic(broker, unique_topic(topic), PARTITIONS)
    finally:
        second.stop()
    assert inventory.gaps == {}
    for partition, highwater in watermarks.items():
        files = [f for f in inventory.files if f.partition == partition]
        assert files[0].first == 0 and files[-1].last == highwater - 1
    # .unique: no version of a key emitted twice (a repeat after the restart would be).
    emitted = Counter((r.key, r.value) for records in winners.values() for r in records)
    assert emitted and max(emitted.values()) == 1


async def _produce_widgets(url: str, count: int) -> None:
    records = [{"widget_id": f"w{i}", "version": 1, "name": "bolt", "price": 1.5 * i,
                "updated_at": "2026-11-26T10:00:00Z"} for i in range(count)]
    async with aiohttp.ClientSession(url) as http, http.post(
            "/topics/widgets/records", json={"records": records}) as resp:
        assert resp.status == 200, await resp.text()


async def test_dev_stops_on_ctrl_c_within_the_bound_and_leaves_no_process(
        tmp_path: Path) -> None:
    dev = DevProcess(tmp_path, dev_env(tmp_path, BOUND))
    try:
        await wait_for(dev.ready, timeout=90, what="onepipe dev ready")
        await _produce_widgets(dev.url, 500)
        family = descendants(dev.proc.pid)
        assert family, "onepipe dev runs the broker as a child process"
        os.killpg(dev.proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
        took = await asyncio.to_thread(_wait_exit, dev.proc, BOUND + EXIT_SLACK)
        await wait_for(lambda: not any(running(pid) for pid in family), timeout=10,
                       what="every child of onepipe dev to exit")
    finally:
        dev.kill()
    print(f"onepipe dev exited {took:.1f} s after Ctrl-C (bound {BOUND} s), code "
          f"{dev.proc.returncode}")
    assert dev.proc.returncode == 0, dev.log.read_text()[-4000:]


async def test_dev_stops_when_its_broker_dies(tmp_path: Path) -> None:
    dev = DevProcess(tmp_path, dev_env(tmp_path, BOUND))
    try:
        await wait_for(dev.healthy, timeout=90, what="onepipe dev")
        family = descendants(dev.proc.pid)
        brokers = [pid for pid in family if command(pid).startswith("tansu")]
        assert len(brokers) == 1, family
        os.kill(brokers[0], signal.SIGKILL)
        took = await asyncio.to_thread(_wait_exit, dev.proc, BOUND + EXIT_SLACK)
        await wait_for(lambda: not any(running(pid) for pid in family), timeout=10,
                       what="every child of onepipe dev to exit")
    finally:
        dev.kill()
    log = dev.log.read_text()
    print(f"onepipe dev exited {took:.1f} s after its broker died, code {dev.proc.returncode}")
    # Without its broker the worker cannot commit: the stop is usually cut short (3).
    assert dev.proc.returncode in (1, EXIT_STOP_TIMEOUT), log[-4000:]
    assert "the embedded broker exited" in log


async def test_a_killed_dev_takes_its_broker_with_it(tmp_path: Path) -> None:
    dev = DevProcess(tmp_path, dev_env(tmp_path, BOUND))
    try:
        await wait_for(dev.healthy, timeout=90, what="onepipe dev")
        family = descendants(dev.proc.pid)
        os.kill(dev.proc.pid, signal.SIGKILL)  # no cleanup runs in onepipe dev
        dev.proc.wait()
        await wait_for(lambda: not any(running(pid) for pid in family), timeout=10,
                       what="the broker and encoders to die with their parent")
    finally:
        dev.kill()
