"""``/status.json``, ``/status`` (rendered by headless Chromium) and ``onepipe status``.

One worker world per module: two registered topics with records, a consumer group that
stopped part-way through one of them while records kept arriving (stuck, found with an
injected clock), and a second group that is caught up. The page is rendered by the real
browser (``chromium``, a system package: ``apt-get install -y chromium``); the test fails,
never skips, when it is missing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import struct
import sys
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from onepipe.app.context import WorkerContext
from onepipe.app.embedded import free_port
from onepipe.app.lag_monitor import LagMonitor, MonitoredGroup
from onepipe.app.runtime import Runtime
from onepipe.app.settings import Settings
from onepipe.app.web.server import WebServer
from onepipe.app.web.status import render_status_html, status_document
from onepipe.schemas.errors import NotFoundError
from tests.fixtures.services import kafka_for, unique, wait_for
from tests.fixtures.topics import create_topic

ONEPIPE = str(Path(sys.executable).with_name("onepipe"))
WINDOW = (1280, 900)
#: Colours of the page's CSS a screenshot must show: a stuck lag bar, a normal one.
STUCK_RED = (0xDC, 0x26, 0x26)
BAR_BLUE = (0x3B, 0x82, 0xF6)

READING: dict[str, Any] = {
    "type": "record", "name": "Reading", "namespace": "test.status", "fields": [
        {"name": "id", "type": "string"}, {"name": "version", "type": "long"}]}


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    """A worker serving /status over a monitor with one stuck and one caught-up group."""

    url: str
    stuck_group: str
    healthy_group: str
    behind_group: str
    stuck_topic: str
    other_topic: str
    server: WebServer
    monitor: LagMonitor
    ctx: WorkerContext


async def produce(http: aiohttp.ClientSession, topic: str, start: int, count: int) -> None:
    records = [{"id": f"k{i}", "version": i} for i in range(start, start + count)]
    async with http.post(f"/topics/{topic}/records", json={"records": records}) as resp:
        assert resp.status == 200, await resp.text()


async def commit_all_but(broker: str, group: str, topic: str, partitions: int,
                         keep: int) -> None:
    """Read ``topic`` as ``group`` and commit each partition's end minus ``keep``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=50)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)

        async def at_end() -> bool:
            await consumer.getmany(timeout_ms=100)
            for tp in tps:
                high = consumer.highwater(tp)
                if high is None or await consumer.position(tp) < high:
                    return False
            return True

        await wait_for(at_end, what=f"{topic} read to its end")
        await consumer.commit({tp: max(0, (consumer.highwater(tp) or 0) - keep)
                               for tp in tps})
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
async def world(make_settings: Callable[..., Settings], broker: str) -> AsyncIterator[World]:
    settings = make_settings(registry_topic=unique("_reg"), app_id="status-demo",
                             monitor_interval_seconds=0)
    async with Runtime(settings) as runtime:
        orders, payments = unique("orders"), unique("payments")
        stuck_group, healthy_group = unique("billing"), unique("ledger")
        behind_group = unique("reports")
        base = f"http://127.0.0.1:{runtime.web.port}"
        async with aiohttp.ClientSession(base_url=base) as http:
            await create_topic(http, orders, READING, partitions=3, key=["id"],
                               order={"rule": "max", "field": "version"})
            await create_topic(http, payments, READING, partitions=2)
            await produce(http, orders, 0, 300)
            await produce(http, payments, 0, 120)
            await commit_all_but(broker, stuck_group, orders, 3, keep=0)
            await commit_all_but(broker, healthy_group, payments, 2, keep=0)
            await commit_all_but(broker, behind_group, payments, 2, keep=30)
            clock = FakeClock()
            monitor = LagMonitor(
                kafka_for(broker),
                [MonitoredGroup(stuck_group, reads=lambda t: t == orders),
                 MonitoredGroup(healthy_group, reads=lambda t: t == payments),
                 MonitoredGroup(behind_group, reads=lambda t: t == payments)],
                lambda: list(runtime.registry.state.topics), clock=clock, stuck_after=60.0)
            await monitor.start(loop=False)
            await monitor.sample()
            # billing stops reading orders while records keep arriving, for over a minute.
            await produce(http, orders, 300, 400)
            clock.now += 61
            await monitor.sample()
        ctx = dataclasses.replace(runtime.context, lag_monitor=monitor)
        server = WebServer(ctx)
        await server.start()
        try:
            yield World(f"http://127.0.0.1:{server.port}", stuck_group, healthy_group,
                        behind_group, orders, payments, server, monitor, ctx)
        finally:
            await server.stop()
            await monitor.stop()


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


async def test_status_json_shows_topics_lag_and_the_stuck_group(world: World) -> None:
    status, doc = await get_json(f"{world.url}/status.json")
    assert status == 200
    topics = {t["topic"]: t for t in doc["topics"]}
    assert topics[world.stuck_topic]["subject"] == f"{world.stuck_topic}-value"
    assert topics[world.stuck_topic]["versions"] == [1]
    assert topics[world.stuck_topic]["compatibility"] == "BACKWARD_TRANSITIVE"
    assert topics[world.stuck_topic]["partitions"] == 3
    consumers = {(c["group"], c["topic"]): c for c in doc["consumers"]}
    stuck = consumers[(world.stuck_group, world.stuck_topic)]
    assert stuck["lag"] == 400 and stuck["stuck"] is True
    assert sum(p["end"] for p in stuck["partitions"]) == 700
    assert all(p["stuck"] for p in stuck["partitions"] if p["lag"])
    healthy = consumers[(world.healthy_group, world.other_topic)]
    assert healthy["lag"] == 0 and healthy["stuck"] is False
    behind = consumers[(world.behind_group, world.other_topic)]
    # 30 behind the end of each partition that has 30 records (keyless records are
    # partitioned sticky, as Kafka's own producer does: one request may fill one).
    assert behind["lag"] == sum(min(30, p["end"]) for p in behind["partitions"]) >= 30
    assert behind["stuck"] is False  # behind, but nothing arrives
    assert doc["stuck"] is True
    assert doc["last_verify"] is None

    status, only = await get_json(f"{world.url}/status.json?group={world.healthy_group}")
    assert status == 200 and only["stuck"] is False
    assert {c["group"] for c in only["consumers"]} == {world.healthy_group}


@pytest.mark.parametrize("query", ["group=nobody", "topic=no-such-topic"])
async def test_unknown_group_or_topic_is_a_404_naming_it(world: World, query: str) -> None:
    for path in ("/status.json", "/status"):
        status, body = await get_json(f"{world.url}{path}?{query}")
        assert status == 404
        assert body["code"] == "not_found"
        assert query.split("=")[1] in body["message"]


async def test_the_page_escapes_what_it_shows(world: World) -> None:
    url = f"{world.url}/status"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            assert "no verify run yet" in await resp.text()
        ctx = world.ctx
        ctx.last_verify.result = {"topic": "<script>alert(1)</script>", "ok": "a&b"}
        try:
            async with http.get(url) as resp:
                page = await resp.text()
        finally:
            ctx.last_verify.result = None
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "a&amp;b" in page


async def test_without_a_monitor_the_page_says_it_is_off(world: World) -> None:
    ctx = dataclasses.replace(world.ctx, lag_monitor=None)
    doc = status_document(ctx)
    assert doc["consumers"] == [] and doc["monitor"]["enabled"] is False
    assert "lag monitor off" in render_status_html(doc)
    with pytest.raises(NotFoundError, match="monitor is off"):
        status_document(ctx, group=world.stuck_group)


# ------------------------------------------------------------- headless Chromium

def chromium_binary() -> str:
    wanted = os.environ.get("CHROMIUM") or "chromium"
    found = shutil.which(wanted) or (None if "CHROMIUM" in os.environ else
                                     shutil.which("chromium-browser"))
    if not found:
        pytest.fail(f"the status page is tested in headless Chromium, and {wanted!r} is not "
                    "an executable: run `apt-get install -y chromium` (Debian) or set "
                    "CHROMIUM=/path/to/chromium")
    return found


async def run_browser(*args: str, profile: Path) -> bytes:
    process = await asyncio.create_subprocess_exec(
        chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu",
        "--hide-scrollbars", f"--user-data-dir={profile}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=90)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"chromium did not finish within 90s: {args}") from None
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out


def read_png(path: Path) -> tuple[int, int, set[tuple[int, ...]]]:
    """Width, height and distinct RGB colours of an 8-bit RGB/RGBA PNG (no Pillow)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    pos, idat, header = 8, bytearray(), b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour_type in (2, 6), f"unsupported PNG: {depth=} {colour_type=}"
    bpp = 3 if colour_type == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(bytes(idat))
    previous = bytearray(stride)
    colours: set[tuple[int, ...]] = set()
    for y in range(height):
        row = y * (stride + 1)
        kind, line = raw[row], bytearray(raw[row + 1:row + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = previous[i], (previous[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        colours.update(tuple(line[i:i + 3]) for i in range(0, stride, bpp))
        previous = line
    return width, height, colours


async def test_the_status_page_renders_in_headless_chromium(world: World, tmp_path: Path
                                                            ) -> None:
    url = f"{world.url}/status"
    screenshot = tmp_path / "status.png"
    size = f"--window-size={WINDOW[0]},{WINDOW[1]}"
    dom_bytes, _ = await asyncio.gather(
        run_browser("--dump-dom", size, url, profile=tmp_path / "profile-dom"),
        run_browser(f"--screenshot={screenshot}", size, url, profile=tmp_path / "profile-png"))
    dom = dom_bytes.decode()
    print(f"\nstatus page screenshot: {screenshot}")  # for a human look
    assert world.stuck_topic in dom and world.other_topic in dom
    assert world.stuck_group in dom and world.healthy_group in dom
    assert 'class="stuck"' in dom and "STUCK 61s" in dom
    bar = (f'class="lagbar" style="width:100.0%" data-group="{world.stuck_group}" '
           f'data-topic="{world.stuck_topic}"')
    assert bar in dom, "no full-width lag bar for the stuck group"
    assert "caught up" in dom  # the healthy group's partitions: no bar
    assert f'data-group="{world.behind_group}" data-topic="{world.other_topic}"' in dom
    assert "no verify run yet" in dom

    assert screenshot.exists(), "chromium wrote no screenshot"
    width, height, colours = await asyncio.to_thread(read_png, screenshot)
    assert (width, height) == WINDOW
    assert len(colours) > 50, f"the screenshot looks blank: {len(colours)} colour(s)"
    assert STUCK_RED in colours, "no stuck (red) lag bar or badge in the screenshot"
    assert BAR_BLUE in colours, "no (blue) lag bar of the group that is behind"


# ------------------------------------------------------------------- onepipe status

async def run_cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEPIPE_")}
    process = await asyncio.create_subprocess_exec(
        ONEPIPE, "status", *args, env={**env, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_onepipe_status_exits_1_and_names_the_stuck_consumer(world: World) -> None:
    code, out, err = await run_cli("--url", world.url)
    assert code == 1, (out, err)
    assert world.stuck_group in out and world.stuck_topic in out and "STUCK" in out
    assert "partition(s) STUCK" in out


async def test_onepipe_status_exits_0_when_every_consumer_progresses(world: World) -> None:
    code, out, err = await run_cli("--url", world.url, "--group", world.healthy_group)
    assert code == 0, (out, err)
    assert world.healthy_group in out and "STUCK" not in out
    assert "all consumers progressing" in out


async def test_onepipe_status_exits_2_with_a_clear_error_when_unreachable(world: World) -> None:
    code, out, err = await run_cli("--url", f"http://127.0.0.1:{free_port()}")
    assert code == 2
    assert err.startswith("error: cannot reach the worker at http://127.0.0.1:")
    assert "--url" in err and "Traceback" not in err
    code, _, err = await run_cli("--url", world.url, "--group", "nobody")
    assert code == 2 and "HTTP 404" in err and "nobody" in err
