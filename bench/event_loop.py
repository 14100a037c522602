"""The aiohttp request cycle on each event loop a worker can run (``ONEPIPE_EVENT_LOOP``).

    .venv/bin/python bench/event_loop.py [--seconds S] [--connections C]

For each loop (asyncio's, uvloop's) a bare aiohttp server in a subprocess - one POST
route that parses the JSON body with orjson and answers a small JSON document, what a
one-record produce request costs without validation and Kafka - is driven by one aiohttp
client over C keep-alive connections (closed loop) for S seconds. Printed: requests/s
and the server's CPU per request (its own process's user + system time over the run).
The server's CPU a request is the ceiling of the endpoint's request cycle on that loop;
the client is the same in both runs. Alternates the loops twice (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

from bench.common import read_proc  # noqa: E402
from onepipe.app.embedded import free_port  # noqa: E402
from onepipe.app.serve import event_loop_factory  # noqa: E402
from onepipe.app.settings import load_settings  # noqa: E402

BODY = orjson.dumps({"widget_id": "w1", "version": 1, "name": "x" * 100, "price": 1.5,
                     "updated_at": "2026-11-26T10:00:00Z"})


async def _handle(request: web.Request) -> web.Response:
    record = orjson.loads(await request.read())
    return web.Response(body=orjson.dumps({"topic": request.match_info["topic"],
                                           "offsets": [{"partition": 0, "offset": 1}],
                                           "fields": len(record)}),
                        content_type="application/json")


def serve(port: int, loop_kind: str) -> None:
    app = web.Application()
    app.router.add_post("/topics/{topic}/records", _handle)
    new_loop, _ = event_loop_factory(load_settings(event_loop=loop_kind))  # the worker's
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None,
                loop=new_loop())


async def drive(url: str, seconds: float, connections: int) -> int:
    done = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as s:
        end = time.monotonic() + seconds

        async def client() -> None:
            nonlocal done
            while time.monotonic() < end:
                async with s.post(url, data=BODY,
                                  headers={"content-type": "application/json"}) as resp:
                    await resp.read()
                done += 1
        await asyncio.gather(*(client() for _ in range(connections)))
    return done


async def _up(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            async with aiohttp.ClientSession() as s, s.post(url, data=BODY) as resp:
                await resp.read()
                return
        except aiohttp.ClientError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def measure(loop_kind: str, seconds: float, connections: int) -> tuple[float, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/topics/widgets/records"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), loop_kind])
    try:
        asyncio.run(_up(url))
        cpu, started = read_proc(server.pid)[0], time.monotonic()
        done = asyncio.run(drive(url, seconds, connections))
        elapsed, used = time.monotonic() - started, read_proc(server.pid)[0] - cpu
    finally:
        server.terminate()
        server.wait(10)
    return done / elapsed, used / done * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--serve", nargs=2, metavar=("PORT", "LOOP"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return
    print(f"bare aiohttp server, one small JSON POST a request, {args.connections} "
          f"connections, {args.seconds:g} s a run, {os.cpu_count()} cores")
    for kind in ("asyncio", "uvloop", "asyncio", "uvloop"):
        rate, us = measure(kind, args.seconds, args.connections)
        print(f"  {kind:<8} {rate:>8,.0f} req/s   server CPU {us:>6.1f} us/request")


if __name__ == "__main__":
    main()
