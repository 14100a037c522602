"""Produce-path benchmark: the HTTP endpoint against raw librdkafka and raw aiokafka.

    .venv/bin/python bench/produce.py [--records N] [--duration S] [--quick] [--tokens] [--json]
    ONEPIPE_KAFKA_CLIENT=aiokafka .venv/bin/python bench/produce.py   # the old producer

One run starts an embedded tansu broker on a free port and one ``onepipe worker``
subprocess on it (catalog/ applied, so topic ``widgets`` exists), then measures from this
process (the load generator):

1. ceilings - both measured in this run (bench/ceilings.py), with the factory's settings
               (acks=all, the worker's linger, 1 MiB batches), pre-encoded records
               identical to what the endpoint writes (Confluent-framed Avro of
               ``widgets``, keyed): raw ``confluent_kafka.Producer`` in a plain loop (the
               librdkafka ceiling), and raw ``AIOKafkaProducer`` with ``send()`` futures
               gathered per chunk of 500, best of 1 and N chunk loops (the old ceiling,
               kept for continuity). Each measured before and again after phase 2, best
               counts. Written to a separate 4-partition topic, so the worker's agents
               (which consume ``widgets``) stay idle meanwhile.
2. batched   - POST /topics/widgets/records, 500 records per request, N clients.
               Targets: >= 0.15 of the librdkafka ceiling, and above raw aiokafka;
               meanwhile a probe GETs /health every 50 ms: answered within 100 ms
               (the worker's event loop is never held longer, agents included).
3. single    - one record per request, closed loop over C keep-alive connections.
               Target: >= 5,000 req/s.
4. fixed     - open loop at a fixed offered rate (2,000 req/s): request i is scheduled
               at t0 + i/rate and its latency is measured from that time, so queueing
               in the client counts (no coordinated omission). Target: p99 <= 25 ms.

Per-record CPU of each stage the endpoint runs (JSON parse, JSON->datum, Avro encoding,
produce through the worker's producer kind) is measured in this process on the same
records and printed as budgets.

Run order is 4, 3, 1, 2, 1: tansu's memory storage slows down as it holds more data, so
the latency phases run before the bulk phases store ~1M records (see ``bench()``).

HTTP bodies are serialized with orjson before the clock starts. The batched phase posts
through one aiohttp session with a TCPConnector limit and keep-alive; the single-record
phases through bench/http_client.py's lean keep-alive client (``--client raw``, the
default): aiohttp's client took ~310-340 µs of the bench's CPU a request, as much as the
worker spends serving it, so on two cores it measured itself as much as the endpoint
(``--client aiohttp`` runs them as before). CPU% of the bench,
worker and broker processes, and of everything else on the machine ("other"), is printed
per phase, to show which one is the bottleneck and whether the machine was shared.
Before each phase the bench waits for the worker to go idle (its archive and example
agents consume ``widgets`` and may still be catching up), so phases do not bleed into
each other. Broker and worker are stopped on exit, error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from aiokafka.errors import TopicAlreadyExistsError  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bench.ceilings import aiokafka_ceiling, rdkafka_ceiling  # noqa: E402
from bench.common import (  # noqa: E402
    ProcStat,
    Row,
    Services,
    Worker,
    descendants,
    install_sigterm,
    log,
    machine_facts,
    percentile,
    print_results,
    read_proc,
    tree_cpu,
    wait_for_idle,
    wait_groups_stable,
)
from bench.http_client import Pool, ProtocolError  # noqa: E402
from onepipe.app.auth import add_token  # noqa: E402
from onepipe.app.runtime import make_producer  # noqa: E402
from onepipe.app.settings import Settings, load_settings  # noqa: E402
from onepipe.app.web.json_body import parse_json_body  # noqa: E402
from onepipe.schemas.avro_batch_write import MIN_RECORDS, column_writer  # noqa: E402
from onepipe.schemas.avro_schema import parse_schema  # noqa: E402
from onepipe.schemas.codec import KeyEncoder, encode_body, frame  # noqa: E402
from onepipe.schemas.errors import OnepipeError  # noqa: E402
from onepipe.schemas.registry_state import RegistryState  # noqa: E402
from onepipe.schemas.topic_names import archive_group  # noqa: E402
from onepipe.schemas.validation import compile_converter  # noqa: E402
from onepipe.sinks.publish.publisher import Publisher, TopicWriter  # noqa: E402

TOPIC = "widgets"
CEILING_TOPIC = "bench-ceiling"
CHUNK = 500
JSON_HEADERS = {"Content-Type": "application/json"}
#: The single-record phases' HTTP client: "raw" (bench/http_client.py) or "aiohttp".
CLIENT = "raw"

TARGET_RATIO = 0.15  # of the librdkafka ceiling
TARGET_AIOKAFKA_RATIO = 1.0  # above raw aiokafka with pre-encoded bytes
TARGET_SINGLE_RPS = 5000.0
TARGET_FIXED_P99_MS = 25.0
TARGET_HEALTH_MS = 100.0  # /health answered within this while the batched phase runs

#: CPU% of one core used by processes other than bench, worker and broker during a phase
#: above which the phase is flagged: the machine was shared and the figure is pessimistic.
NOISY_PCT = 25

COLOURS = ("RED", "GREEN", "BLUE", "OTHER")


def make_record(i: int) -> dict[str, Any]:
    """A realistic widgets record; prices stay below the example agent's alert threshold."""
    return {
        "widget_id": f"widget-{i:010d}",
        "version": 1 + i // 1_000_000,
        "name": f"stainless hex bolt M{4 + i % 20} x {10 + i % 90} mm, batch {i % 997}",
        "price": round(0.5 + (i % 99_000) / 100, 2),
        "colour": COLOURS[i % 4],
        "updated_at": 1_795_000_000_000 + i,
        "tags": ["hardware", f"size-{i % 20}", "bench"],
    }


# --------------------------------------------------------------------------- helpers


def settings_like_worker(worker: Worker) -> Settings:
    """The settings the worker runs with (same env), so the ceilings use its values."""
    fields = Settings.model_fields
    overrides = {name: v for k, v in worker.env.items()
                 if k.startswith("ONEPIPE_") and (name := k.removeprefix("ONEPIPE_").lower())
                 in fields}
    return load_settings(**overrides)


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        resp.raise_for_status()
        return await resp.json()


async def ensure_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


def settle(pid: int, *, idle_pct: float = 10.0, window: float = 0.5,
           timeout: float = 120.0) -> float:
    """Wait until ``pid`` used < idle_pct of a core in two windows in a row; return the
    seconds waited (a worker's agents may still be working through a previous phase)."""
    t0 = time.monotonic()
    quiet = 0
    while time.monotonic() - t0 < timeout and quiet < 2:
        before = tree_cpu(pid)
        time.sleep(window)
        quiet = quiet + 1 if 100.0 * (tree_cpu(pid) - before) / window < idle_pct else 0
    return time.monotonic() - t0


def cpu_json(st: ProcStat) -> dict[str, int]:
    """Per-process CPU% of one core, plus ``other``: the rest of the machine meanwhile."""
    return {**{k: round(v) for k, v in st.cpu_pct.items()}, "other": round(st.other_pct)}


def ms(seconds: float) -> float:
    return seconds * 1000.0


# --------------------------------------------------------------------------- phases


async def run_ceiling(settings: Settings, encoded: Sequence[tuple[bytes | None, bytes]],
                      kind: str, concurrency: int) -> float:
    """Seconds for a raw client of ``kind`` to produce ``encoded`` (bench/ceilings.py)."""
    if kind == "rdkafka":
        return await asyncio.to_thread(rdkafka_ceiling, settings.kafka, CEILING_TOPIC,
                                       encoded, settings.linger_ms)
    return await aiokafka_ceiling(settings.kafka, CEILING_TOPIC, encoded, concurrency,
                                  settings.linger_ms)


async def stage_budgets(settings: Settings, schema: Any, schema_id: int, key_fields: list[str],
                  bodies: Sequence[bytes], encoded: Sequence[tuple[bytes | None, bytes]],
                  ) -> dict[str, float]:
    """CPU µs per record of each stage of the endpoint, run here on the same records with
    the endpoint's own calls (bench/encode_path.py splits the encode stages further)."""
    writer = TopicWriter(TOPIC, schema_id, 1, schema, compile_converter(schema),
                         KeyEncoder(schema, key_fields),
                         columns=column_writer(schema, schema_id, key_fields))
    n = sum(len(orjson.loads(b)["records"]) for b in bodies)
    t = time.process_time()
    parsed = [parse_json_body(b)["records"] for b in bodies]
    t_json = time.process_time() - t
    t = time.process_time()
    datums = [writer.converter.convert_many(records)[0] for records in parsed]
    t_convert = time.process_time() - t
    t = time.process_time()
    for chunk in datums:
        writer._encode(chunk, 0)  # what TopicWriter.encode does after converting
    t_encode = time.process_time() - t
    # What a request of at least MIN_RECORDS records takes instead of the two above: the
    # batch path (onepipe.schemas.avro_batch_write), validation and encoding in one.
    t = time.process_time()
    for records in parsed:
        writer.encode(records)
    t_columns = time.process_time() - t
    if writer.columns is None or any(len(r) < MIN_RECORDS for r in parsed) or (
            writer.columns.encode(parsed[0]) is None):
        t_columns = math.nan  # not the batch path: the schema, the size or the records
    # The worker's producer behind the Publisher, 500-record calls from 4 tasks: the
    # endpoint's produce step exactly (send_many on librdkafka, send() on aiokafka).
    producer = make_producer(settings, "bench-stage")
    await producer.start()
    try:
        publisher = Publisher(RegistryState(), producer, timeout=60)
        chunks = iter([encoded[i:i + CHUNK] for i in range(0, n, CHUNK)])

        async def client() -> None:
            for chunk in chunks:
                await publisher.send_landed(CEILING_TOPIC, chunk)  # the endpoint's call

        t = time.process_time()
        await asyncio.gather(*(client() for _ in range(4)))
        t_produce = time.process_time() - t
    finally:
        await producer.stop()
    return {"json_parse": 1e6 * t_json / n, "json_to_datum": 1e6 * t_convert / n,
            "avro_encode": 1e6 * t_encode / n, "avro_batch_path": 1e6 * t_columns / n,
            f"produce_{settings.kafka_client}": 1e6 * t_produce / n}


class HealthProbe:
    """GET ``/health`` every :data:`PERIOD` seconds on its own connection while a phase runs:
    a slow answer means the worker's event loop was held (the issue's bound: 100 ms)."""

    PERIOD = 0.05

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def longest(self) -> float:
        return max(self.latencies, default=float("nan"))

    def summary(self) -> dict[str, float]:
        lat = self.latencies
        return {"probes": len(lat), "p50": round(ms(percentile(lat, 50)), 1),
                "p99": round(ms(percentile(lat, 99)), 1), "max": round(ms(self.longest), 1)}

    def brief(self) -> str:
        s = self.summary()
        return f"p50 {s['p50']:.1f} / p99 {s['p99']:.1f} / max {s['max']:.1f} ms"

    async def _probe(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                t = time.perf_counter()
                async with session.get(self.url) as resp:
                    await resp.read()
                self.latencies.append(time.perf_counter() - t)
                await asyncio.sleep(self.PERIOD)

    async def __aenter__(self) -> HealthProbe:
        self._task = asyncio.create_task(self._probe())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def loop_lag_buckets(worker_url: str) -> dict[float, float]:
    """The worker's onepipe_event_loop_lag_seconds buckets (upper bound -> cumulative):
    its own loop's, the one that serves HTTP (with ONEPIPE_AGENT_PROCESSES each agent
    process has its own, labelled with its process)."""
    async with aiohttp.ClientSession() as session, session.get(f"{worker_url}/metrics") as r:
        text = await r.text()
    return {float(sample.labels["le"]): sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "onepipe_event_loop_lag_seconds"
            for sample in family.samples if sample.name.endswith("_bucket")
            and sample.labels.get("process", "0") == "0"}


def loop_lag_between(before: dict[float, float], after: dict[float, float]) -> str:
    """What the worker's loop-lag samples of one phase say: how many waited > 25 ms, and
    the bucket of the worst."""
    if not after:
        return "loop lag: not exported"
    new = {le: after[le] - before.get(le, 0.0) for le in after}
    total = new[math.inf]
    if not total:
        return "loop lag: no sample"
    over = total - max((v for le, v in new.items() if le <= 0.025), default=0.0)
    worst = min(le for le, v in new.items() if v == total)
    return (f"loop lag: {over:.0f} of {total:.0f} samples > 25 ms, worst "
            f"{'> 2.5 s' if worst == math.inf else f'<= {worst * 1000:.0f} ms'}")


async def run_batched(urls: Sequence[str], bodies: Sequence[bytes], clients: int
                      ) -> tuple[float, int]:
    """Seconds to POST every body with ``clients`` concurrent connections, client i to
    worker i mod N; (secs, errors)."""
    connector = aiohttp.TCPConnector(limit=clients)
    errors = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        async def post(body: bytes, url: str = urls[0]) -> None:
            nonlocal errors
            async with session.post(url, data=body, headers=JSON_HEADERS) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1

        await asyncio.gather(*(post(bodies[0], urls[i % len(urls)])  # open connections
                               for i in range(clients)))
        it = iter(bodies)

        async def client(url: str) -> None:
            for body in it:
                await post(body, url)

        t0 = time.perf_counter()
        await asyncio.gather(*(client(urls[i % len(urls)]) for i in range(clients)))
        return time.perf_counter() - t0, errors


@contextlib.asynccontextmanager
async def posting(urls: Sequence[str], connections: int
                  ) -> AsyncIterator[Callable[[bytes, int], Awaitable[int]]]:
    """``post(body, i)``: POST ``body`` to ``urls[i]`` over keep-alive connections (at
    most ``connections`` per URL's worker), its status; with ``CLIENT`` "raw" through
    bench/http_client.py's lean client, with "aiohttp" through aiohttp's (what the bench
    used before: ~300 µs of the load generator's CPU a request, bench/http_client.py)."""
    if CLIENT == "aiohttp":
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def post_aiohttp(body: bytes, i: int) -> int:
                async with session.post(urls[i], data=body, headers=JSON_HEADERS) as resp:
                    await resp.read()
                    return resp.status

            yield post_aiohttp
        return
    pools: list[Pool] = []
    paths: list[str] = []
    for url in urls:
        parts = urlsplit(url)
        # ``connections`` in all, as aiohttp's connector limit: spread over the workers.
        pools.append(Pool(f"{parts.scheme}://{parts.netloc}",
                          max(1, math.ceil(connections / len(urls))),
                          {k: v for k, v in JSON_HEADERS.items() if k != "Content-Type"}))
        paths.append(parts.path)
    try:
        async def post_raw(body: bytes, i: int) -> int:
            pool = pools[i]
            return await pool.send(pool.request_bytes(paths[i], body))

        yield post_raw
    finally:
        for pool in pools:
            await pool.close()


async def run_closed(urls: Sequence[str], bodies: Sequence[bytes], connections: int,
                     duration: float) -> tuple[float, list[float], int, tuple[float, float]]:
    """Closed loop for ``duration`` s: (elapsed, latencies in s, errors, trend).

    ``trend`` is (req/s in the first third, req/s in the last third): a falling rate means
    something slows down as data accumulates (on tansu: the broker, see BENCHMARKS.md).
    Connection c posts to worker c mod N.
    """
    latencies: list[float] = []
    done_at: list[float] = []
    errors = 0
    async with posting(urls, connections) as send:
        async def post(body: bytes, i: int) -> None:
            nonlocal errors
            t = time.perf_counter()
            if await send(body, i) != 200:
                errors += 1
            now = time.perf_counter()
            latencies.append(now - t)
            done_at.append(now)

        # Warm up: open every connection and let the worker's producer find its batches.
        await asyncio.gather(*(post(bodies[i % len(bodies)], i % len(urls))
                               for i in range(connections * 4)))
        latencies.clear()
        done_at.clear()
        counter = iter(range(10**12))
        n = len(bodies)
        t0 = time.perf_counter()
        end = t0 + duration

        async def client(i: int) -> None:
            while time.perf_counter() < end:
                await post(bodies[next(counter) % n], i)

        await asyncio.gather(*(client(c % len(urls)) for c in range(connections)))
        elapsed = time.perf_counter() - t0
        third = elapsed / 3
        first = sum(1 for t in done_at if t > t0 and t <= t0 + third) / third
        last = sum(1 for t in done_at if t > t0 + 2 * third) / third
        return elapsed, latencies, errors, (first, last)


async def run_open(urls: Sequence[str], bodies: Sequence[bytes], rate: float, duration: float,
                   connections: int) -> tuple[float, list[float], int, float]:
    """Open loop at ``rate`` req/s: (elapsed, latencies from scheduled time, errors, lag).

    ``lag`` is the largest delay between a request's scheduled time and the moment the
    scheduler created it: a large value means the client itself fell behind. Request i
    goes to worker i mod N.
    """
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    max_lag = 0.0
    async with posting(urls, connections) as send:
        async def post(body: bytes, scheduled: float, i: int) -> None:
            nonlocal errors
            try:
                if await send(body, i) != 200:
                    errors += 1
            except (aiohttp.ClientError, OSError, ProtocolError, TimeoutError):
                errors += 1
            latencies.append(loop.time() - scheduled)

        await asyncio.gather(*(post(bodies[i], loop.time(), i % len(urls))
                               for i in range(min(8, connections))))
        latencies.clear()
        total = int(rate * duration)
        n = len(bodies)
        tasks = []
        t0 = loop.time() + 0.01
        for i in range(total):
            scheduled = t0 + i / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                max_lag = max(max_lag, -delay)
                if i % 16 == 0:
                    await asyncio.sleep(0)  # behind schedule: still let responses run
            tasks.append(asyncio.ensure_future(post(bodies[i % n], scheduled,
                                                    i % len(urls))))
        await asyncio.gather(*tasks)
        return loop.time() - t0, latencies, errors, max_lag


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=300_000,
                   help="records for the ceiling and the batched phase (default 300000)")
    p.add_argument("--duration", type=float, default=15.0,
                   help="seconds of each single-record phase (default 15)")
    p.add_argument("--clients", type=int, default=4,
                   help="concurrent clients of the batched phase (default 4)")
    p.add_argument("--connections", type=int, default=32,
                   help="connections of the single-record max-rate phase (default 32)")
    p.add_argument("--rate", type=float, default=2000.0,
                   help="offered req/s of the fixed-rate phase (default 2000)")
    p.add_argument("--quick", action="store_true",
                   help="short smoke run: 20000 records, 3 s phases")
    p.add_argument("--tokens", action="store_true",
                   help="run the worker with a tokens file; every request carries a publish "
                        "token (the auth gate's cost on the hot path)")
    p.add_argument("--endpoint-only", action="store_true",
                   help="run the worker without its agents (archive, dedup, checksums, "
                        "sinks): a worker that only serves the endpoint, as a deployment "
                        "that scales produce and agents apart runs it")
    p.add_argument("--workers", type=int, default=1,
                   help="workers on the broker; clients and connections spread over them "
                        "(as a load balancer would): how the endpoint scales out")
    p.add_argument("--client", choices=("raw", "aiohttp"), default="raw",
                   help="HTTP client of the single-record phases: raw (bench/http_client.py, "
                        "~70-80 µs of the bench's CPU a request against aiohttp's ~310-340) or "
                        "aiohttp (the client before)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--keep", action="store_true", help="keep the temp dir with the logs")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                   help="before the run and before each phase, wait up to S seconds for the "
                        "rest of the machine to go idle (other load skews every figure)")
    p.epilog = "Exit status: 0 if every target is met, 1 if one is missed, 2 on error."
    args = p.parse_args(argv)
    if args.quick:
        args.records = min(args.records, 20_000)
        args.duration = min(args.duration, 3.0)
    args.records = max(CHUNK * args.clients, args.records // CHUNK * CHUNK)
    return args


async def bench(args: argparse.Namespace, services: Services, workers: Sequence[Worker],
                extra: dict[str, Any]) -> list[Row]:
    quiet = args.json
    worker = workers[0]
    pids: dict[str, int | Sequence[int] | None] = {
        "bench": os.getpid(), "worker": [w.pid for w in workers],
        "broker": services.broker_pid}
    settings = settings_like_worker(worker)
    latest = await get_json(f"{worker.url}/subjects/{TOPIC}-value/versions/latest")
    meta = await get_json(f"{worker.url}/topics/{TOPIC}/metadata")
    schema = parse_schema(latest["schema"])
    schema_id = int(latest["id"])
    partitions = int(meta.get("partitions", 4))
    await ensure_topic(services.bootstrap, CEILING_TOPIC, partitions)

    # ---- the records: JSON bodies for the endpoint, the same records pre-encoded
    t = time.perf_counter()
    records = [make_record(i) for i in range(args.records)]
    converter = compile_converter(schema)
    key_encoder = KeyEncoder(schema, meta["key"])
    datums, errors = converter.convert_many(records)
    if errors:
        raise RuntimeError(f"bench records do not validate: {errors[:3]}")
    encoded = [(key_encoder.encode(d), frame(schema_id, encode_body(schema, d)))
               for d in datums]
    batch_bodies = [orjson.dumps({"records": records[i:i + CHUNK]})
                    for i in range(0, len(records), CHUNK)]
    single_n = min(len(records), max(20_000, int(args.rate * args.duration) + 100))
    single_offset = len(records)  # new keys for single-record phases
    single_bodies = [orjson.dumps(make_record(single_offset + i)) for i in range(single_n)]
    payload = sum(len(k or b"") + len(v) for k, v in encoded) / len(encoded)
    value_size = sum(len(v) for _, v in encoded) / len(encoded)
    json_size = sum(map(len, batch_bodies)) / len(records)
    extra["record"] = {"value_bytes": round(value_size, 1), "key_bytes":
                       round(payload - value_size, 1), "json_bytes": round(json_size, 1),
                       "schema_id": schema_id, "partitions": partitions}
    log(f"records: {len(records)} x {value_size:.0f} B value + {payload - value_size:.0f} B "
        f"key (Confluent-framed Avro, schema id {schema_id}); JSON {json_size:.0f} B/record; "
        f"prepared in {time.perf_counter() - t:.1f}s", quiet=quiet)
    n_records = len(records)
    del records, datums
    # Millions of prepared objects would make every full collection of the load generator
    # a stall of 200+ ms (measured: the open-loop scheduler lagged 220-260 ms), counted as
    # endpoint latency. Freeze them out of the collector's sight.
    gc.collect()
    gc.freeze()
    url = [f"{w.url}/topics/{TOPIC}/records" for w in workers]
    phases: dict[str, Any] = {}
    extra["phases"] = phases

    def quiesce() -> float:
        """Before a phase: the worker idle (agents caught up), then optionally the machine."""
        waited = max(settle(w.pid) for w in workers)
        if args.wait_idle > 0:
            wait_for_idle(args.wait_idle, exclude=[os.getpid(), services.broker_pid or 0,
                                                   *(w.pid for w in workers)])
        return waited

    # Run order: the latency phases first, then the bulk ones. tansu's memory storage gets
    # slower as it holds more data (its CPU per request about doubled after 400k records
    # in our measurement), an artifact of the test broker, not of onepipe: latency is
    # measured before the bulk phases store ~1M records. The ceiling runs before and
    # after the batched phase and the best figure counts, so the broker's growth cannot
    # flatter the ratio.

    # The worker answers /health before its consumer groups joined: wait for them, then
    # warm up (connections, caches, first fetches of the agents) at the offered rate.
    groups = [settings.app_id]
    if getattr(settings, "archive_enabled", False):
        groups.append(archive_group(settings.app_id))
    t = time.monotonic()
    states = await wait_groups_stable(services.bootstrap, groups)
    log(f"consumer groups {states} after {time.monotonic() - t:.1f}s", quiet=quiet)
    quiesce()
    await run_open(url, single_bodies, args.rate, min(2.0, args.duration), connections=64)

    # ---- 4. fixed offered rate (open loop)
    quiesce()
    held = await loop_lag_buckets(worker.url)
    with ProcStat(pids) as st:
        secs, lat, errs, lag = await run_open(url, single_bodies, args.rate, args.duration,
                                              connections=64)
    held_fixed = loop_lag_between(held, await loop_lag_buckets(worker.url))
    f50, f99 = ms(percentile(lat, 50)), ms(percentile(lat, 99))
    fmax = ms(max(lat)) if lat else float("nan")
    achieved = len(lat) / secs
    phases["fixed"] = {"offered_req_per_s": args.rate, "achieved_req_per_s": round(achieved),
                       "requests": len(lat), "p50_ms": round(f50, 2), "p99_ms": round(f99, 2),
                       "max_ms": round(fmax, 2), "errors": errs,
                       "client_max_lag_ms": round(ms(lag), 2), "cpu_pct": cpu_json(st)}
    log(f"4. fixed {args.rate:.0f} req/s: p50 {f50:.1f} ms, p99 {f99:.1f} ms, max {fmax:.1f} ms, "
        f"client lag max {ms(lag):.1f} ms ({st.brief()}); {held_fixed}", quiet=quiet)

    # ---- 3. single-record max rate (closed loop)
    quiesce()
    held = await loop_lag_buckets(worker.url)
    with ProcStat(pids) as st:
        secs, lat, s_errs, trend = await run_closed(url, single_bodies, args.connections,
                                                    args.duration)
    held_single = loop_lag_between(held, await loop_lag_buckets(worker.url))
    single_rps = len(lat) / secs
    s50, s99 = ms(percentile(lat, 50)), ms(percentile(lat, 99))
    phases["single"] = {"seconds": round(secs, 3), "requests": len(lat),
                        "req_per_s": round(single_rps), "p50_ms": round(s50, 2),
                        "p99_ms": round(s99, 2), "errors": s_errs,
                        "connections": args.connections, "cpu_pct": cpu_json(st),
                        "req_per_s_first_third": round(trend[0]),
                        "req_per_s_last_third": round(trend[1])}
    log(f"3. single, {args.connections} connections ({CLIENT} client): {single_rps:,.0f} "
        f"req/s (first third {trend[0]:,.0f}, last third {trend[1]:,.0f}), p50 {s50:.1f} ms, "
        f"p99 {s99:.1f} ms "
        f"({st.brief()}); {held_single}", quiet=quiet)

    # ---- 1. ceilings, 2. batched, 1. ceilings again
    async def ceiling(kind: str, conc: int, label: str) -> float:
        """Run one ceiling measurement; return how long the worker was busy before it."""
        waited = quiesce()
        with ProcStat(pids) as st:
            secs = await run_ceiling(settings, encoded, kind, conc)
        rps = len(encoded) / secs
        phases[label] = {"seconds": round(secs, 3), "records_per_s": round(rps),
                         "chunk_loops": conc, "cpu_pct": cpu_json(st)}
        log(f"1. ceiling {kind} ({label.split('_')[-1]}), {conc} loop(s): {rps:,.0f} rec/s "
            f"({st.brief()})", quiet=quiet)
        return waited

    await ceiling("rdkafka", 1, "ceiling_rdkafka_before")
    for conc in sorted({1, args.clients}):
        await ceiling("aiokafka", conc, f"ceiling_aiokafka_c{conc}")

    quiesce()
    held = await loop_lag_buckets(worker.url)
    with ProcStat(pids) as st:
        async with HealthProbe(f"{worker.url}/health") as health:
            secs, b_errs = await run_batched(url, batch_bodies, args.clients)
    held_batched = loop_lag_between(held, await loop_lag_buckets(worker.url))
    batched_rps = n_records / secs
    phases["batched"] = {"seconds": round(secs, 3), "records_per_s": round(batched_rps),
                         "errors": b_errs, "clients": args.clients, "cpu_pct": cpu_json(st),
                         "health_ms": health.summary()}
    log(f"2. batched, {args.clients} clients x {CHUNK} records: {batched_rps:,.0f} rec/s "
        f"({st.brief()}); /health {health.brief()}; {held_batched}", quiet=quiet)

    def best(kind: str) -> str:
        return max((k for k in phases if k.startswith(f"ceiling_{kind}")),
                   key=lambda k: phases[k]["records_per_s"])

    busy = await ceiling("rdkafka", 1, "ceiling_rdkafka_after")
    await ceiling("aiokafka", phases[best("aiokafka")]["chunk_loops"], "ceiling_aiokafka_after")
    phases["batched"]["worker_busy_after_s"] = round(busy, 1)
    log(f"   (the worker was busy {busy:.1f}s after the batched phase: its agents catching up)",
        quiet=quiet)
    rd_best, aio_best = best("rdkafka"), best("aiokafka")
    rd_rps = float(phases[rd_best]["records_per_s"])
    aio_rps = float(phases[aio_best]["records_per_s"])
    ratio, aio_ratio = batched_rps / rd_rps, batched_rps / aio_rps
    extra["ceiling"] = {"rdkafka": round(rd_rps), "aiokafka": round(aio_rps),
                        "best_of": [rd_best, aio_best], "worker_client": settings.kafka_client}
    log(f"   ratio {ratio:.3f} of librdkafka ({rd_best}), {aio_ratio:.2f} of aiokafka "
        f"({aio_best}); worker producer: {settings.kafka_client}", quiet=quiet)
    quiesce()
    budgets = await stage_budgets(settings, schema, schema_id, meta["key"], batch_bodies[:100],
                            encoded)
    extra["cpu_us_per_record"] = {k: round(v, 2) for k, v in budgets.items()}
    log("   CPU per record: " + ", ".join(f"{k} {v:.2f} µs" for k, v in budgets.items()),
        quiet=quiet)

    _, rss, hwm = read_proc(worker.pid)  # the first worker's
    pool = [read_proc(p) for p in descendants(worker.pid)]
    pool_rss = sum(r[1] for r in pool)
    extra["worker_rss_mib"] = {"now": round(rss), "peak": round(hwm),
                               "children": len(pool), "children_now": round(pool_rss)}

    def cpu(phase: str) -> str:
        c = phases[phase]["cpu_pct"]
        noisy = " (other load!)" if c["other"] > NOISY_PCT else ""
        return (f"cpu% bench {c['bench']} / worker {c['worker']} / broker {c['broker']}"
                f" / other {c['other']}{noisy}")

    def ceilings(kind: str) -> str:
        return ", ".join(f"{k.removeprefix(f'ceiling_{kind}_')} {phases[k]['records_per_s']:,}"
                         for k in phases if k.startswith(f"ceiling_{kind}"))

    return [
        Row("1a. ceiling: raw librdkafka",
            f"{rd_rps:,.0f} rec/s, {rd_rps * payload / 1e6:.1f} MB/s",
            note=f"best of {ceilings('rdkafka')}; {cpu(rd_best)}"),
        Row("1b. ceiling: raw aiokafka",
            f"{aio_rps:,.0f} rec/s, {aio_rps * payload / 1e6:.1f} MB/s",
            note=f"best of {ceilings('aiokafka')}; {cpu(aio_best)}"),
        Row("2. endpoint, batched", f"{batched_rps:,.0f} rec/s, "
            f"{batched_rps * payload / 1e6:.1f} MB/s",
            note=f"{args.clients} clients x {CHUNK} rec, producer {settings.kafka_client}; "
                 f"{cpu('batched')}"),
        Row("   ratio to librdkafka", f"{ratio:.3f}", f">= {TARGET_RATIO:.2f}",
            ratio >= TARGET_RATIO and b_errs == 0),
        Row("   ratio to aiokafka", f"{aio_ratio:.2f}", f"> {TARGET_AIOKAFKA_RATIO:.2f}",
            aio_ratio > TARGET_AIOKAFKA_RATIO and b_errs == 0),
        Row("   /health under that load", f"max {health.longest * 1000:.0f} ms",
            f"<= {TARGET_HEALTH_MS:.0f} ms", health.longest * 1000 <= TARGET_HEALTH_MS,
            f"{health.brief()} (a GET every {HealthProbe.PERIOD * 1000:.0f} ms on its own "
            f"connection); worker {held_batched}"),
        Row("   CPU µs/record", " / ".join(f"{v:.1f}" for v in budgets.values()),
            note=" / ".join(budgets) + " (bench process, same records)"),
        Row("3. single-record, max", f"{single_rps:,.0f} req/s", f">= {TARGET_SINGLE_RPS:,.0f}",
            single_rps >= TARGET_SINGLE_RPS and s_errs == 0,
            f"{args.connections} connections, {CLIENT} client; {cpu('single')}"),
        Row("   latency p50 / p99", f"{s50:.1f} / {s99:.1f} ms",
            note=f"req/s first third {trend[0]:,.0f}, last third {trend[1]:,.0f}"),
        Row(f"4. fixed {args.rate:,.0f} req/s: p99", f"{f99:.1f} ms",
            f"<= {TARGET_FIXED_P99_MS:.0f} ms",
            f99 <= TARGET_FIXED_P99_MS and errs == 0 and achieved >= 0.95 * args.rate,
            f"achieved {achieved:,.0f} req/s, {errs} errors, client lag max {ms(lag):.0f} ms; "
            f"{cpu('fixed')}"),
        Row("   latency p50 / max", f"{f50:.1f} / {fmax:.1f} ms"),
        Row("worker RSS (end / peak)", f"{rss:.0f} / {hwm:.0f} MiB",
            note=f"+ {len(pool)} child process(es) {pool_rss:.0f} MiB" if pool else ""),
    ]


def _tokens(folder: Path) -> dict[str, str]:
    """A tokens file with one token that may publish anywhere; requests carry it."""
    path = folder / "tokens.json"
    token, _ = add_token(path, "bench", ["*"], admin=True)
    JSON_HEADERS["Authorization"] = f"Bearer {token}"
    return {"ONEPIPE_TOKENS_FILE": str(path)}


def main(argv: Sequence[str] | None = None) -> int:
    global CLIENT
    args = parse_args(argv)
    CLIENT = args.client
    install_sigterm()
    facts = machine_facts()
    extra: dict[str, Any] = {"options": {k: v for k, v in vars(args).items()
                                         if k not in ("json", "markdown", "keep")}}
    quiet = args.json
    if args.wait_idle > 0:
        busy = wait_for_idle(args.wait_idle)
        log(f"machine busy {busy:.0f}% of a core before the run", quiet=quiet)
    try:
        with Services(keep=args.keep) as services:
            t = time.monotonic()
            services.start_broker()
            log(f"broker: tansu on {services.bootstrap} (pid {services.broker_pid})",
                quiet=quiet)
            env = _tokens(services.dir) if args.tokens else {}
            if args.endpoint_only:
                env.update({f"ONEPIPE_{name}_ENABLED": "false"
                            for name in ("ARCHIVE", "DEDUP", "CHECKSUMS", "SINKS")})
            workers = []
            for _ in range(args.workers):  # one after the other: each joins the groups
                worker = services.start_worker(env)
                log(f"worker: pid {worker.pid}, {worker.url}, healthy after "
                    f"{time.monotonic() - t:.1f}s; logs in {services.dir}", quiet=quiet)
                workers.append(worker)
            for worker in workers:
                settle(worker.pid)
            rows = asyncio.run(bench(args, services, workers, extra))
    except KeyboardInterrupt:
        print("interrupted; broker and worker stopped", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, aiohttp.ClientError, OnepipeError) as exc:
        # the broker or the worker failed to start, or stopped serving mid-run
        print(f"error: {exc}\n(broker and worker stopped; --keep keeps their logs)",
              file=sys.stderr)
        return 2
    kind = "endpoint only, no agents" if args.endpoint_only else "with its agents"
    count = "one worker" if args.workers == 1 else f"{args.workers} workers"
    print_results(f"onepipe produce benchmark (tansu, memory storage, {count} {kind})",
                  rows, facts,
                  extra, as_json=args.json, markdown=args.markdown)
    if not args.json:
        r = extra["record"]
        print(f"\nrecord: {r['value_bytes']:.0f} B value + {r['key_bytes']:.0f} B key "
              f"(Confluent-framed Avro), {r['json_bytes']:.0f} B as JSON; "
              f"MB/s counts key + value bytes")
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
