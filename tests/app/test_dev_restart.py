"""`make dev` restarted keeps its data: Ctrl-C, then `onepipe dev` again on the same data
dir shows the same topics, schema ids, records, unique rows, sink rows and verify
figures, and goes on archiving new records (the embedded broker keeps nothing itself).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from onepipe.sinks.lake import open_lake
from onepipe.sinks.lake.inventory import raw_inventory
from tests.fixtures.dev_process import DevProcess, dev_env
from tests.fixtures.paths import REPO
from tests.fixtures.services import wait_for

DEMO = {"type": "record", "name": "Demo", "fields": [{"name": "id", "type": "string"}]}


def _widgets(start: int, count: int, version: int) -> list[dict[str, Any]]:
    return [{"widget_id": f"w{i % 150}", "version": version, "name": f"bolt {i}",
             "price": 10.0 + i, "updated_at": "2026-11-26T10:00:00Z"}
            for i in range(start, start + count)]


async def _call(url: str, method: str, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession(url) as http, http.request(
            method, path, json=body,
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"}
            if path.startswith("/subjects") else None) as resp:
        assert resp.status == 200, f"{method} {path}: {resp.status} {await resp.text()}"
        return await resp.json()


def _sqlite_rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return sorted(db.execute("SELECT widget_id, version, name, price FROM widgets"))


async def _settled(dev: DevProcess, lake_url: str, produced: int, keys: int,
                   sqlite: Path) -> dict[str, Any]:
    """Wait until the lake, the sink and verify have everything; the verify report."""
    async with open_lake(lake_url) as lake:

        async def archived() -> bool:
            return (await raw_inventory(lake, "widgets")).records == produced

        await wait_for(archived, timeout=120, what=f"{produced} widgets archived")
    await wait_for(lambda: sqlite.exists() and len(_sqlite_rows(sqlite)) == keys,
                   timeout=120, what=f"{keys} rows in the SQLite sink")
    report: dict[str, Any] = {}

    async def agrees() -> bool:
        nonlocal report
        report = await _call(dev.url, "GET", "/verify/widgets")
        return bool(report["ok"])

    await wait_for(agrees, timeout=120, interval=1.0, what="verify to agree everywhere")
    return report


def _figures(report: dict[str, Any]) -> Any:
    """The per-day figures of every system (what must not change across a restart)."""
    return [{k: v for k, v in day.items() if k not in ("duration_seconds",)}
            for day in report["days"]]


def _catalog_flushing_every_second(tmp_path: Path) -> None:
    """The repository's catalog as ``onepipe dev`` reads it, but ``widgets`` archived
    after 1 s instead of its 60 s: the test waits for every record in the lake, and an
    earlier flush changes nothing else it looks at (the same records, ids and figures)."""
    catalog = tmp_path / "catalog"  # DevProcess uses it instead of copying the original
    shutil.copytree(REPO / "catalog", catalog)
    path = catalog / "widgets.yaml"
    entry = yaml.safe_load(path.read_text())
    entry["archive"]["flush_seconds"] = 1
    path.write_text(yaml.safe_dump(entry, sort_keys=False))


async def _stop(dev: DevProcess) -> None:
    os.killpg(dev.proc.pid, signal.SIGINT)
    code = await asyncio.to_thread(dev.proc.wait, 30)
    assert code == 0, dev.log.read_text()[-4000:]


async def test_a_restarted_dev_stack_keeps_every_record_and_id(tmp_path: Path) -> None:
    # The clean lake is one of the systems verify compares: compact often.
    env = {**dev_env(tmp_path), "ONEPIPE_COMPACT_INTERVAL_SECONDS": "3"}
    _catalog_flushing_every_second(tmp_path)
    data = Path(env["ONEPIPE_DATA_DIR"])
    sqlite, lake_url = data / "widgets.db", (data / "lake").as_uri()
    dev = DevProcess(tmp_path, env, "dev-1")
    try:
        await wait_for(dev.ready, timeout=120, what="onepipe dev ready")
        for version in (1, 2):
            await _call(dev.url, "POST", "/topics/widgets/records",
                        {"records": _widgets(0, 300, version)})
        demo = await _call(dev.url, "POST", "/subjects/demo-value/versions",
                           {"schema": json.dumps(DEMO)})
        widgets_id = (await _call(dev.url, "GET",
                                  "/subjects/widgets-value/versions/latest"))["id"]
        topics = await _call(dev.url, "GET", "/topics")
        before = await _settled(dev, lake_url, 600, 150, sqlite)
        rows = _sqlite_rows(sqlite)
        await _stop(dev)
    finally:
        dev.kill()

    again = DevProcess(tmp_path, env, "dev-2")
    try:
        await wait_for(again.ready, timeout=120, what="restarted onepipe dev ready")
        assert await _call(again.url, "GET", "/topics") == topics
        assert (await _call(again.url, "GET",
                            "/subjects/widgets-value/versions/latest"))["id"] == widgets_id
        assert (await _call(again.url, "GET", "/subjects/demo-value/versions/1"))["id"] \
            == demo["id"]
        after = await _settled(again, lake_url, 600, 150, sqlite)
        assert _figures(after) == _figures(before)
        assert _sqlite_rows(sqlite) == rows
        # It goes on: new records are archived, a new schema gets a new id.
        await _call(again.url, "POST", "/topics/widgets/records",
                    {"records": _widgets(0, 150, 3)})
        other = await _call(again.url, "POST", "/subjects/other-value/versions",
                            {"schema": json.dumps({**DEMO, "name": "Other"})})
        assert other["id"] not in (widgets_id, demo["id"])
        await _settled(again, lake_url, 750, 150, sqlite)
        await _stop(again)
    finally:
        again.kill()
    log = again.log.read_text()
    assert "restored from" in log and "widgets (600 records)" in log, log[:3000]
