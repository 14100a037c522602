"""A worker's sinks as users see them: ``GET /sinks``, ``/metrics``, ``/status``, ``onepipe sinks``.

A runtime with sinks on (and the dedup agent, which writes ``.unique``) follows two
declared sinks: a SQLite one whose DSN variable is set, which must write the winners and
report ``running``, and one whose variable is unset, which must be reported
``unconfigured`` with the variable's name - never skipped silently.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from onepipe.app.runtime import Runtime
from onepipe.app.settings import Settings
from tests.fixtures.dedup import ORDERS, SCHEMAS
from tests.fixtures.services import unique, wait_for
from tests.fixtures.worker_process import ONEPIPE

SET, UNSET = "ONEPIPE_TEST_SINKS_SET_DSN", "ONEPIPE_TEST_SINKS_UNSET_DSN"


async def test_sinks_are_reported_running_or_unconfigured(
        make_settings: Callable[..., Settings], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SET, f"sqlite:///{tmp_path / 'sinks.db'}")
    monkeypatch.delenv(UNSET, raising=False)
    settings = make_settings(registry_topic=unique("_registry"), app_id=unique("sinkapp"),
                             sinks_enabled=True, dedup_enabled=True,
                             monitor_interval_seconds=1.0)
    topic = unique("sinks")
    body = {"schema": SCHEMAS["max"], "partitions": 2, "key": ["id"], "order": ORDERS["max"],
            "sinks": [{"name": "lite", "kind": "sqlite", "dsn_env": SET, "table": "rows"},
                      {"name": "pg", "kind": "postgres", "dsn_env": UNSET, "table": "rows"}]}
    async with Runtime(settings) as runtime, aiohttp.ClientSession(
            f"http://127.0.0.1:{runtime.web.port}") as http:
        async with http.put(f"/topics/{topic}/metadata", json=body) as resp:
            assert resp.status == 200, await resp.text()
        async with http.post(f"/topics/{topic}/records", json={"records": [
                {"id": "a", "version": 1, "payload": "x"},
                {"id": "a", "version": 2, "payload": "y"},
                {"id": "b", "version": 1, "payload": "z"}]}) as resp:
            assert resp.status == 200, await resp.text()

        async def sinks() -> dict[str, Any]:
            async with http.get("/sinks") as resp:
                assert resp.status == 200
                return {s["sink"]: s for s in (await resp.json())["sinks"]}

        async def written() -> bool:
            lite = (await sinks()).get("lite")
            return lite is not None and lite["rows_written"] == 2 and lite["total_lag"] == 0

        await wait_for(written, timeout=90, what="the SQLite sink to write both winners")
        found = await sinks()
        assert found["lite"]["state"] == "running"
        assert found["pg"]["state"] == "unconfigured"
        assert UNSET in found["pg"]["last_error"]
        async with http.get("/metrics") as resp:
            text = await resp.text()
        assert f'onepipe_sink_up{{sink="lite",topic="{topic}"}} 1.0' in text
        assert f'onepipe_sink_up{{sink="pg",topic="{topic}"}} 0.0' in text
        assert f'onepipe_sink_rows_written_total{{sink="lite",topic="{topic}"}} 2.0' in text
        async with http.get("/status") as resp:
            page = await resp.text()
        assert "Online sinks" in page and "unconfigured" in page
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("ONEPIPE_")},
               "COLUMNS": "200"}
        cli = await asyncio.to_thread(
            subprocess.run, [ONEPIPE, "sinks", "--url", f"http://127.0.0.1:{runtime.web.port}"],
            env=env, capture_output=True, text=True, timeout=60, check=False)
    assert cli.returncode == 1, cli.stdout + cli.stderr  # one sink does not run
    assert "lite" in cli.stdout and "unconfigured" in cli.stdout
