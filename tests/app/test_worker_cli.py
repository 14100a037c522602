"""The `onepipe` command end to end: apply a catalog, run a worker, its example agent.

These run the installed console script in subprocesses against the session broker, from
a directory other than the checkout, with only ONEPIPE_* variables set.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from onepipe.app.embedded import free_port
from onepipe.schemas.codec import decode
from onepipe.tables.kafka.topics import read_to_end
from tests.fixtures.paths import REPO
from tests.fixtures.services import unique, wait_for
from tests.fixtures.worker_process import GROUP_TIMEOUTS

ONEPIPE = str(Path(sys.executable).with_name("onepipe"))


@pytest.fixture
def cli_env(broker: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEPIPE_")}
    env.update(ONEPIPE_BROKER=broker, ONEPIPE_REGISTRY_TOPIC=unique("_registry"),
               ONEPIPE_IDEMPOTENT_PRODUCER="false", ONEPIPE_DATA_DIR=str(tmp_path / "data"),
               **GROUP_TIMEOUTS,
               ONEPIPE_APP_ID=unique("onepipe"))
    return env


def run_cli(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ONEPIPE, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def test_apply_is_idempotent_and_works_from_any_directory(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    first = run_cli(cli_env, "apply", str(REPO / "catalog"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "widgets (schema id" in first.stdout and "registered version 1" in first.stdout
    second = run_cli(cli_env, "apply", str(REPO / "catalog"), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    catalog_topics = len(list((REPO / "catalog").glob("*.yaml")))
    assert second.stdout.count(": unchanged") == catalog_topics, second.stdout


def test_apply_refuses_an_incompatible_schema_with_the_reason(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog"
    shutil.copytree(REPO / "catalog", catalog)
    assert run_cli(cli_env, "apply", str(catalog), cwd=tmp_path).returncode == 0
    schema = json.loads((catalog / "widgets.avsc").read_text())
    schema["fields"].append({"name": "weight_kg", "type": "double"})  # no default: breaks BACKWARD
    (catalog / "widgets.avsc").write_text(json.dumps(schema))
    refused = run_cli(cli_env, "apply", str(catalog), cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: ")
    assert "widgets.yaml" in refused.stderr and "incompatible" in refused.stderr
    assert "weight_kg" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize(("var", "value"), [("ONEPIPE_WEB_PORT", "abc"),
                                            ("ONEPIPE_BROKER", "nonsense")])
def test_wrong_setting_stops_the_worker_naming_the_variable(
    cli_env: dict[str, str], tmp_path: Path, var: str, value: str
) -> None:
    result = run_cli({**cli_env, var: value}, "worker", cwd=tmp_path)
    assert result.returncode == 2
    assert var in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def start_worker(cli_env: dict[str, str], tmp_path: Path
                 ) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], str]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(**extra: str) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        env = {**cli_env, **extra, "ONEPIPE_WEB_PORT": str(port),
               "ONEPIPE_CATALOG_DIR": str(REPO / "catalog"), "ONEPIPE_EXAMPLE_AGENTS": "true"}
        with (tmp_path / f"worker-{len(started)}.log").open("wb") as log:
            proc = subprocess.Popen([ONEPIPE, "worker"], env=env, cwd=tmp_path, stdout=log,
                                    stderr=subprocess.STDOUT)
        started.append(proc)
        return proc, f"http://127.0.0.1:{port}"

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def _healthy(proc: subprocess.Popen[bytes], url: str) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"the worker exited with {proc.returncode}; see its log")
    try:
        async with aiohttp.ClientSession() as session, session.get(url + "/health") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def _read_topic(broker: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False,
                                fetch_max_wait_ms=100)
    await consumer.start()
    try:
        values: list[bytes] = []
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        await read_to_end(consumer, tp, lambda recs: values.extend(r.value for r in recs))
        return values
    finally:
        await consumer.stop()


async def test_worker_serves_api_runs_example_agent_and_survives_restart(
    start_worker: Callable[..., tuple[subprocess.Popen[bytes], str]], broker: str,
    tmp_path: Path,
) -> None:
    proc, url = start_worker()  # on the default event loop (uvloop); the restart on asyncio's
    await wait_for(lambda: _healthy(proc, url), timeout=60, what="worker /health")
    async with aiohttp.ClientSession(url) as http:
        widget: dict[str, Any] = {"widget_id": unique("w"), "version": 3, "name": "anvil",
                                  "price": 1500.0, "updated_at": "2026-11-26T10:00:00Z"}
        async with http.post("/topics/widgets/records", json=widget) as resp:
            assert resp.status == 200, await resp.text()
        async with http.get("/subjects") as resp:
            subjects = await resp.json()
        async with http.get("/health") as resp:
            health = await resp.json()
    assert subjects == sorted(f"{p.stem}-value" for p in (REPO / "catalog").glob("*.yaml"))
    assert "widgets-value" in subjects
    assert health["status"] == "ok" and health["archive"]["records_in"] >= 0

    async def alert_arrived() -> bool:
        values = await _read_topic(broker, "widget_price_alerts")
        return any(widget["widget_id"].encode() in v for v in values)

    await wait_for(alert_arrived, timeout=60, what="the example agent's alert")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) is not None
    assert "event loop: uvloop.Loop" in (tmp_path / "worker-0.log").read_text()

    proc2, url2 = start_worker(ONEPIPE_EVENT_LOOP="asyncio")
    await wait_for(lambda: _healthy(proc2, url2), timeout=60, what="restarted worker /health")
    # Logged once the worker is ready (its agents started), after /health answers.
    await wait_for(lambda: "event loop: asyncio.unix_events._UnixSelectorEventLoop" in (
        tmp_path / "worker-1.log").read_text(), timeout=60, what="the restart on asyncio")
    async with aiohttp.ClientSession(url2) as http, http.get("/subjects") as resp:
        assert await resp.json() == subjects
    alert_values = await _read_topic(broker, "widget_price_alerts")
    ours = [v for v in alert_values if widget["widget_id"].encode() in v]
    async with aiohttp.ClientSession(url2) as http, http.get(
            "/subjects/widget_price_alerts-value/versions/latest") as resp:
        latest = await resp.json()
    from onepipe.schemas.avro_schema import parse_schema
    schema = parse_schema(latest["schema"])
    _, alert = decode(ours[0], {latest["id"]: schema}.__getitem__)
    assert alert == {"widget_id": widget["widget_id"], "version": 3, "price": 1500.0,
                     "reason": "price 1500.00 >= 1000.00"}
