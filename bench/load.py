"""Load and soak: many concurrent HTTP clients against real ``onepipe worker`` processes.

    .venv/bin/python bench/load.py [--duration 20] [--clients 48] [--workers 1,2]
    .venv/bin/python bench/load.py --soak 600 [--rate 1000] [--workers 1]

Every configuration gets a fresh embedded tansu broker (memory storage) and N ``onepipe
worker`` subprocesses on it with the production defaults (archive, dedup, checksum and
compaction agents running; one shared lake in a temp dir; catalog/ applied, so ``widgets``
has 4 partitions). Sinks are not configured (no DSN set), so they report ``unconfigured``.
Records are realistic ``widgets`` over a bounded key space (``--keyspace``, versions
increasing), so dedup state stops growing once every key was seen and memory can be flat.

Request mix (``--mix``, default ``1:100,100:1``): per 101 requests, 100 carry one record
and one carries 100, so half the records arrive one per request and half in batches.

Default mode: closed loop, ``--clients`` connections spread round-robin over the workers'
endpoints, ``--duration`` seconds per configuration (1 worker, then 2), after the consumer
groups are stable and a short warm-up. Prints records/s and requests/s, p50/p99/max
latency (overall and per request size), errors by HTTP status or exception, worker RSS
over time (``/proc/<pid>/status`` VmRSS of each worker and of its child processes, every
second), CPU-seconds per second of the load generator, each worker, the broker and the
rest of the machine, the 2-vs-1 ratio and which of them is the limit.

Soak mode (``--soak S``): open loop at ``--rate`` records/s for S seconds (request i is
scheduled at a fixed time and its latency counts from then, so a stall is not hidden by
the clients waiting), sampling every ``--interval`` seconds. Writes
``bench/results/soak_rss.csv`` and ``soak_rss.png`` (RSS per process over time, latency
and throughput) and prints, per process, the slope of a linear fit of RSS over the second
half (MiB/min) and its max-min there. Exit 1 if a worker process is not flat.

What to expect of a worker's RSS: the dedup and checksum stores are RocksDB databases, one
per partition each, with 64 MiB memtables; every record appends to both until a memtable
fills and flushes, so RSS first rises by ~600 B per record (measured) and then saws between
flushes: 8 memtables (4 partitions) are ~1M records, more than 10 minutes at 1,000 records/s.
Only a soak past the first flushes can show flat memory (e.g. ``--rate 3000 --mix 100:1``).

The load generator is this process (one event loop, aiohttp). On a 2-core machine it
competes with the workers and the broker for the same cores: read the CPU figures before
reading the ratio. Exit status: 0 done (soak: memory flat), 1 soak not flat, 2 error.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
import threading
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import orjson  # noqa: E402

from bench.common import (  # noqa: E402
    Row,
    Services,
    Worker,
    descendants,
    install_sigterm,
    log,
    machine_busy,
    machine_facts,
    percentile,
    print_results,
    read_proc,
    wait_for_idle,
)
from bench.produce import make_record, settings_like_worker  # noqa: E402
from onepipe.schemas.topic_names import (  # noqa: E402
    archive_group,
    checksums_group,
    compact_group,
    dedup_group,
)

TOPIC = "widgets"
JSON_HEADERS = {"Content-Type": "application/json"}
#: Longer than the worker's produce timeout (30 s): a request the worker gives up on comes
#: back as its own error status instead of a client-side timeout.
TIMEOUT = aiohttp.ClientTimeout(total=60)
RESULTS = ROOT / "bench" / "results"
#: A worker process whose RSS grows faster than this over the soak's second half is not flat.
FLAT_MIB_PER_MIN = 0.5
LOAD_MIX = "1:100,100:1"
#: Fewer single-record requests in the soak: tansu's memory storage walks its stored batches
#: on every fetch, so 500 single-record batches a second (1:100,100:1 at 1,000 records/s)
#: saturated the broker after 4 minutes (measured; BENCHMARKS.md), a test-broker artifact.
SOAK_MIX = "1:10,100:1"
#: Open loop: requests waiting for an answer beyond which new ones are not sent but counted
#: as errors, so a stalled worker does not grow the load generator without bound.
MAX_PENDING = 5000
#: Seconds per point of the soak plot's latency and throughput curves.
PLOT_WINDOW = 10.0


# --------------------------------------------------------------------------- load


def widget(i: int, keyspace: int) -> dict[str, Any]:
    """Record i: key ``i % keyspace``, a higher version each time the key comes round."""
    record = make_record(i)
    record["widget_id"] = f"widget-{i % keyspace:010d}"
    record["version"] = 1 + i // keyspace
    return record


class RecordSource:
    """Request bodies of fresh records (built while the clients run, as real clients do)."""

    def __init__(self, keyspace: int) -> None:
        self.keyspace = keyspace
        self.next = 0

    def body(self, size: int) -> bytes:
        i, self.next = self.next, self.next + size
        if size == 1:
            return orjson.dumps(widget(i, self.keyspace))
        return orjson.dumps({"records": [widget(j, self.keyspace) for j in range(i, i + size)]})


@dataclass
class Stats:
    """Completed requests: finish time, latency and size of each 200, errors by cause."""

    done_at: array[float] = field(default_factory=lambda: array("d"))
    latency: array[float] = field(default_factory=lambda: array("d"))
    size: array[int] = field(default_factory=lambda: array("i"))
    errors: Counter[str] = field(default_factory=Counter)
    t0: float = 0.0
    t1: float = 0.0
    max_lag: float = 0.0  # open loop: how far the scheduler itself fell behind

    @property
    def seconds(self) -> float:
        return self.t1 - self.t0

    def latencies(self, size: int | None = None) -> list[float]:
        if size is None:
            return list(self.latency)
        return [lat for lat, s in zip(self.latency, self.size, strict=True) if s == size]

    def between(self, start: float, end: float) -> tuple[int, int, list[float]]:
        """(records, requests, latencies) of the 200s that finished in [start, end)."""
        lats = [lat for t, lat in zip(self.done_at, self.latency, strict=True) if start <= t < end]
        recs = sum(s for t, s in zip(self.done_at, self.size, strict=True) if start <= t < end)
        return recs, len(lats), lats


async def post(session: aiohttp.ClientSession, url: str, body: bytes, size: int,
               started: float, stats: Stats) -> None:
    """One produce request; its latency counts from ``started`` (loop clock)."""
    loop = asyncio.get_running_loop()
    try:
        async with session.post(url, data=body, headers=JSON_HEADERS) as resp:
            await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        stats.errors[type(exc).__name__] += 1
        return
    if status != 200:
        stats.errors[str(status)] += 1
        return
    now = loop.time()
    stats.done_at.append(now)
    stats.latency.append(now - started)
    stats.size.append(size)


async def closed_loop(urls: Sequence[str], source: RecordSource, mix: Sequence[int],
                      clients: int, duration: float) -> Stats:
    """``clients`` connections, each sending its next request when the last one answered."""
    loop = asyncio.get_running_loop()
    stats = Stats()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
        end = loop.time() + duration

        async def client(k: int) -> None:
            url = urls[k % len(urls)]
            j = k * len(mix) // clients  # clients start at different places in the mix
            while loop.time() < end:
                size = mix[j % len(mix)]
                j += 1
                await post(session, url, source.body(size), size, loop.time(), stats)

        stats.t0 = loop.time()
        await asyncio.gather(*(client(k) for k in range(clients)))
        stats.t1 = loop.time()
    return stats


async def open_loop(urls: Sequence[str], source: RecordSource, mix: Sequence[int],
                    rate: float, duration: float, connections: int) -> Stats:
    """``rate`` records/s offered on a fixed schedule, whatever the answers take."""
    loop = asyncio.get_running_loop()
    stats = Stats()
    interval = sum(mix) / len(mix) / rate  # seconds between requests
    pending: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
        stats.t0 = loop.time() + 0.05
        i = 0
        while (scheduled := stats.t0 + i * interval) < stats.t0 + duration:
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                stats.max_lag = max(stats.max_lag, -delay)
                if i % 16 == 0:
                    await asyncio.sleep(0)  # behind schedule: still let responses run
            size = mix[i % len(mix)]
            i += 1
            if len(pending) >= MAX_PENDING:  # the workers fell far behind: shed, and say so
                stats.errors["not sent (client backlog)"] += 1
                continue
            task = asyncio.create_task(post(session, urls[(i - 1) % len(urls)],
                                            source.body(size), size, scheduled, stats))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        stats.t1 = loop.time()
    return stats


# --------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class Tracked:
    """A process to sample; ``pool`` also samples its descendants, as ``<name> pool``."""

    name: str
    pid: int
    pool: bool = False


@dataclass(frozen=True)
class Sample:
    t: float
    """Monotonic clock (the event loop's clock), seconds."""
    rss: dict[str, float]
    """MiB per process name (``<worker> pool``: summed over its child processes)."""
    cpu: dict[str, float]
    """Cumulative CPU seconds per process name."""
    busy: float
    """Cumulative busy CPU seconds of the whole machine."""


class Sampler:
    """Samples RSS and CPU of the tracked processes every ``interval`` s in a thread."""

    def __init__(self, tracked: Sequence[Tracked], interval: float) -> None:
        self.tracked = list(tracked)
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    @property
    def names(self) -> list[str]:
        out = []
        for p in self.tracked:
            out += [p.name, f"{p.name} pool"] if p.pool else [p.name]
        return out

    def sample(self) -> Sample:
        rss: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for p in self.tracked:
            cpu[p.name], rss[p.name], _ = read_proc(p.pid)
            if p.pool:
                children = [read_proc(c) for c in descendants(p.pid)]
                cpu[f"{p.name} pool"] = sum(c[0] for c in children)
                rss[f"{p.name} pool"] = sum(c[1] for c in children)
        return Sample(time.monotonic(), rss, cpu, machine_busy()[0])

    def _run(self) -> None:
        while not self._stop.wait(self.interval - (time.monotonic() - self.samples[-1].t)):
            self.samples.append(self.sample())

    def __enter__(self) -> Sampler:
        self.samples.append(self.sample())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(self.sample())

    def cores(self) -> dict[str, float]:
        """CPU-seconds per second of each process over the sampled time, plus ``other``:
        the rest of the machine (other engineers' tests on a shared machine)."""
        first, last = self.samples[0], self.samples[-1]
        wall = last.t - first.t
        out = {n: max(0.0, last.cpu[n] - first.cpu[n]) / wall for n in self.names}
        out["other"] = max(0.0, (last.busy - first.busy) / wall - sum(out.values()))
        return out


def tracked_processes(services: Services) -> list[Tracked]:
    tracked = [Tracked("generator", os.getpid())]
    tracked += [Tracked(f"worker{i}", w.pid, pool=True)
                for i, w in enumerate(services.workers, 1)]
    if services.broker_pid is not None:
        tracked.append(Tracked("broker", services.broker_pid))
    return tracked


# --------------------------------------------------------------------------- services


def start(services: Services, workers: int, wait_idle: float) -> list[Worker]:
    """Broker + ``workers`` workers sharing one lake (as they would share a bucket)."""
    if wait_idle > 0:
        busy = wait_for_idle(wait_idle)
        log(f"machine busy {busy:.0f}% of a core before starting (others' load)")
    services.start_broker()
    # Sinks need a database: off, rather than each worker reporting them unconfigured.
    env = {"ONEPIPE_LAKE_URL": (services.dir / "lake").as_uri(), "ONEPIPE_SINKS_ENABLED": "false"}
    t = time.monotonic()
    for _ in range(workers):
        services.start_worker(env)
    log(f"broker pid {services.broker_pid} on {services.bootstrap}; workers "
        f"{[w.pid for w in services.workers]} healthy after {time.monotonic() - t:.1f}s; "
        f"logs in {services.dir}")
    settings = settings_like_worker(services.workers[0])
    app_id = settings.app_id
    groups = [app_id, archive_group(app_id), dedup_group(app_id), checksums_group(app_id),
              compact_group(app_id)]
    t = time.monotonic()
    states = asyncio.run(wait_members(services.bootstrap, groups, workers))
    log(f"consumer groups (state, members) {states} after {time.monotonic() - t:.1f}s")
    return services.workers


async def wait_members(bootstrap: str, groups: Sequence[str], members: int,
                       max_wait: float = 90.0) -> dict[str, tuple[str, int]]:
    """Wait until every group is Stable with ``members`` members: a worker that starts
    answers /health before it joined, and a rebalance inside the measurement would be
    measured as the endpoint's latency. Returns the last (state, members) per group."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    await admin.start()
    states: dict[str, tuple[str, int]] = {}
    try:
        deadline = time.monotonic() + max_wait
        while True:
            for name in groups:  # one group per request: tansu answered several badly
                try:
                    responses = await asyncio.wait_for(
                        admin.describe_consumer_groups([name]), 5.0)
                except (KafkaError, ValueError, TypeError, IndexError, TimeoutError) as exc:
                    states[name] = (f"error: {exc!r}", 0)
                    continue
                for response in responses:
                    for group in response.groups:
                        states[group[1]] = (group[2], len(group[5]))
            if (all(states.get(g) == ("Stable", members) for g in groups)
                    or time.monotonic() > deadline):
                return states
            await asyncio.sleep(0.5)  # polling the broker's view of the groups
    finally:
        await admin.close()


def log_findings(worker: Worker, name: str) -> list[str]:
    """Warnings, errors and tracebacks in a worker's log, counted by message."""
    try:
        lines = worker.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    found: Counter[str] = Counter()
    for line in lines:
        for word in ("Traceback", "ERROR", "WARNING", "CRITICAL"):
            if word in line:
                found[f"{word}: {line.split(word, 1)[1].strip()[:150]}"] += 1
                break
    return [f"{name}: {n} x {msg}" for msg, n in found.most_common(8)]


# --------------------------------------------------------------------------- analysis


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def latency_text(lats: Sequence[float]) -> str:
    if not lats:
        return "no answers"
    return (f"{ms(percentile(lats, 50))} / {ms(percentile(lats, 99))} / "
            f"{ms(max(lats))} ms")


def errors_text(errors: Counter[str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in errors.most_common()) or "none"


def fit(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def limit_text(cores: dict[str, float], n_cores: int) -> tuple[str, str]:
    """(verdict, CPU shares): which process throughput is bound by, from CPU-s/s."""
    workers = sum(v for k, v in cores.items() if k.startswith("worker"))
    broker = cores.get("broker", 0.0)
    total = sum(cores.values())
    mains = {k: v for k, v in cores.items() if k.startswith("worker") and "pool" not in k}
    loop_bound = [k for k, v in mains.items() if v >= 0.9]
    share = (f"CPU-s/s: generator {cores['generator']:.2f}, workers {workers:.2f}, broker "
             f"{broker:.2f}, other {cores['other']:.2f}; total {total:.2f} of {n_cores} cores; "
             f"generator = {cores['generator'] / max(total, 1e-9):.0%} of the busy time")
    if total >= 0.85 * n_cores:
        top = max(("generator", cores["generator"]), ("workers", workers),
                  ("broker", broker), ("other load", cores["other"]), key=lambda kv: kv[1])
        verdict = f"machine CPU (all {n_cores} cores busy; largest: {top[0]})"
        if loop_bound:
            verdict += f"; {', '.join(loop_bound)} event loop near one core"
        return verdict, share
    if loop_bound:
        return f"{', '.join(loop_bound)} event loop (one core)", share
    if cores["generator"] >= 0.9:
        return "the load generator's event loop (one core)", share
    if broker >= 0.9:
        return "the broker", share
    return "no process CPU-bound: waiting (acks, linger)", share


# --------------------------------------------------------------------------- modes


def run_config(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    """One closed-loop measurement with ``workers`` workers on a fresh broker."""
    log(f"\n== {workers} worker(s): {args.clients} clients, {args.duration:.0f}s")
    with Services(keep=args.keep) as services:
        start(services, workers, args.wait_idle)
        urls = [f"{w.url}/topics/{TOPIC}/records" for w in services.workers]
        source = RecordSource(args.keyspace)
        asyncio.run(closed_loop(urls, source, args.mix, args.clients, args.warmup))
        with Sampler(tracked_processes(services), 1.0) as sampler:
            stats = asyncio.run(closed_loop(urls, source, args.mix, args.clients,
                                            args.duration))
        findings = [f for i, w in enumerate(services.workers, 1)
                    for f in log_findings(w, f"worker{i}")]
    records = sum(stats.size)
    result = {
        "workers": workers, "stats": stats, "sampler": sampler, "findings": findings,
        "records_per_s": records / stats.seconds,
        "requests_per_s": len(stats.latency) / stats.seconds,
        "cores": sampler.cores(),
    }
    log(f"   {result['records_per_s']:,.0f} records/s, {result['requests_per_s']:,.0f} "
        f"requests/s; p50/p99/max {latency_text(stats.latencies())}; errors "
        f"{errors_text(stats.errors)}")
    return result


def rss_series(sampler: Sampler, every: float = 5.0) -> list[str]:
    """RSS lines, one per process: ``name: a b c ... MiB`` at about ``every`` s apart."""
    t0 = sampler.samples[0].t
    picked, next_t = [], 0.0
    for s in sampler.samples:
        if s.t - t0 >= next_t - 0.5:
            picked.append(s)
            next_t += every
    head = " ".join(f"{s.t - t0:>5.0f}" for s in picked)
    lines = [f"   {'seconds':<14} {head}"]
    for name in sampler.names:
        lines.append(f"   {name:<14} " + " ".join(f"{s.rss[name]:>5.0f}" for s in picked))
    return lines


def default_mode(args: argparse.Namespace) -> int:
    facts = machine_facts()
    results = [run_config(args, n) for n in args.workers]
    rows: list[Row] = []
    for r in results:
        st: Stats = r["stats"]
        label = f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}"
        rows.append(Row(f"{label}: throughput", f"{r['records_per_s']:,.0f} rec/s",
                        note=f"{r['requests_per_s']:,.0f} req/s; {len(st.latency):,} requests "
                             f"in {st.seconds:.1f}s"))
        rows.append(Row("   latency p50/p99/max", latency_text(st.latencies()),
                        note="; ".join(f"{size} rec: {latency_text(st.latencies(size))}"
                                       for size in sorted(set(args.mix)))))
        rows.append(Row("   errors", str(sum(st.errors.values())),
                        note=errors_text(st.errors)))
        cores = r["cores"]
        rows.append(Row("   CPU-s/s", f"{sum(cores.values()):.2f} of {facts['cores']}",
                        note=", ".join(f"{k} {v:.2f}" for k, v in cores.items())))
        sampler: Sampler = r["sampler"]
        rss = ", ".join(f"{n} {sampler.samples[0].rss[n]:.0f}->{sampler.samples[-1].rss[n]:.0f}"
                        f" (max {max(s.rss[n] for s in sampler.samples):.0f})"
                        for n in sampler.names if n != "generator")
        rows.append(Row("   RSS MiB start->end", "", note=rss))
        verdict, share = limit_text(cores, facts["cores"])
        rows.append(Row("   limit", verdict, note=share))
    if len(results) >= 2:
        base = results[0]
        for r in results[1:]:
            rows.append(Row(f"{r['workers']} vs {base['workers']} worker(s)",
                            f"{r['records_per_s'] / base['records_per_s']:.2f}",
                            note=f"records/s; requests/s "
                                 f"{r['requests_per_s'] / base['requests_per_s']:.2f}"))
    print_results(f"onepipe load: {args.clients} concurrent clients, mix "
                  f"{args.mix_text}, {args.duration:.0f}s per configuration "
                  "(tansu memory storage, full workers)", rows, facts)
    for r in results:
        print(f"\nRSS MiB over time, {r['workers']} worker(s) (sampled every second):")
        print("\n".join(rss_series(r["sampler"])))
        if r["findings"]:
            print(f"worker log warnings/errors, {r['workers']} worker(s):")
            print("\n".join(f"   {f}" for f in r["findings"]))
    if facts["cores"] <= 2:
        print(f"\nnote: {facts['cores']} cores: the load generator runs on the same cores as "
              "the workers and the broker; its CPU share is capacity the workers lose.")
    return 0


def soak_mode(args: argparse.Namespace) -> int:
    facts = machine_facts()
    workers = args.workers[0]
    log(f"== soak: {args.soak:.0f}s at {args.rate:,.0f} records/s, {workers} worker(s), "
        f"sampling every {args.interval:.0f}s")
    with Services(keep=args.keep) as services:
        start(services, workers, args.wait_idle)
        urls = [f"{w.url}/topics/{TOPIC}/records" for w in services.workers]
        source = RecordSource(args.keyspace)
        with Sampler(tracked_processes(services), args.interval) as sampler:
            stats = asyncio.run(open_loop(urls, source, args.mix, args.rate, args.soak,
                                          args.clients))
        findings = [f for i, w in enumerate(services.workers, 1)
                    for f in log_findings(w, f"worker{i}")]
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = args.out / f"{args.name}.csv", args.out / f"{args.name}.png"
    windows = write_csv(csv_path, sampler, stats)
    t0 = sampler.samples[0].t
    half = [s for s in sampler.samples if s.t - t0 >= (sampler.samples[-1].t - t0) / 2]
    rows: list[Row] = []
    flat = True
    for name in sampler.names:
        points = [((s.t - t0) / 60, s.rss[name]) for s in half]
        slope = fit(points)
        spread = max(p[1] for p in points) - min(p[1] for p in points)
        target = ""
        ok: bool | None = None
        note = ""
        if name.startswith("worker"):
            target, ok = f"|slope| <= {FLAT_MIB_PER_MIN} MiB/min", abs(slope) <= FLAT_MIB_PER_MIN
            flat = flat and ok
        if name.startswith("worker") and not name.endswith(" pool"):
            per_min = stats.between(half[0].t, half[-1].t)[0] / ((half[-1].t - half[0].t) / 60)
            drops = sum(1 for a, b in zip(half, half[1:], strict=False)
                        if a.rss[name] - b.rss[name] > 32)
            note = (f"; {slope * 2**20 / max(per_min, 1):.0f} B per record answered; "
                    f"{drops} drop(s) of > 32 MiB (RocksDB memtable flushes)")
        rows.append(Row(f"{name} RSS, 2nd half", f"{slope:+.2f} MiB/min", target, ok,
                        f"max-min {spread:.1f} MiB; start {sampler.samples[0].rss[name]:.0f},"
                        f" end {sampler.samples[-1].rss[name]:.0f} MiB{note}"))
    records = sum(stats.size)
    rows.append(Row("achieved", f"{records / stats.seconds:,.0f} rec/s",
                    note=f"{len(stats.latency) / stats.seconds:,.0f} req/s; offered "
                         f"{args.rate:,.0f} rec/s; scheduler lag max {ms(stats.max_lag)} ms"))
    rows.append(Row("latency p50/p99/max", latency_text(stats.latencies()),
                    note="; ".join(f"{size} rec: {latency_text(stats.latencies(size))}"
                                   for size in sorted(set(args.mix)))))
    worst = max(windows, key=lambda w: w[3]) if windows else (0.0, 0, 0, 0.0)
    rows.append(Row("worst window p99", f"{worst[3]:.1f} ms",
                    note=f"at {worst[0]:.0f}s ({args.interval:.0f}s windows)"))
    rows.append(Row("errors", str(sum(stats.errors.values())), note=errors_text(stats.errors)))
    cores = sampler.cores()
    rows.append(Row("CPU-s/s", f"{sum(cores.values()):.2f} of {facts['cores']}",
                    note=", ".join(f"{k} {v:.2f}" for k, v in cores.items())))
    plot(png_path, sampler, stats, args)
    print_results(f"onepipe soak: {args.soak:.0f}s at {args.rate:,.0f} records/s offered "
                  f"(open loop, mix {args.mix_text}), {workers} worker(s)", rows, facts)
    print(f"\nwrote {png_path.relative_to(ROOT) if png_path.is_relative_to(ROOT) else png_path}"
          f" and {csv_path.name} beside it")
    print("broker: tansu's memory storage keeps every record it is sent, so its RSS grows "
          "by design; the verdict is for the workers.")
    if findings:
        print("worker log warnings/errors:")
        print("\n".join(f"   {f}" for f in findings))
    return 0 if flat else 1


def write_csv(path: Path, sampler: Sampler, stats: Stats) -> list[tuple[float, int, int, float]]:
    """One row per sample: RSS and cumulative CPU per process, and the answers of the
    interval before it. Returns the intervals as (t s, records, requests, p99 ms)."""
    t0 = sampler.samples[0].t
    windows = []
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        names = sampler.names
        out.writerow(["t_s", *(f"{n.replace(' ', '_')}_rss_mib" for n in names),
                      *(f"{n.replace(' ', '_')}_cpu_s" for n in names),
                      "records", "requests", "p50_ms", "p99_ms"])
        prev = t0
        for s in sampler.samples:
            recs, reqs, lats = stats.between(prev, s.t)
            p50 = percentile(lats, 50) * 1000 if lats else 0.0
            p99 = percentile(lats, 99) * 1000 if lats else 0.0
            if s.t - prev >= sampler.interval / 2:  # not the stub after the last one
                windows.append((s.t - t0, recs, reqs, p99))
            out.writerow([f"{s.t - t0:.1f}", *(f"{s.rss[n]:.1f}" for n in names),
                          *(f"{s.cpu[n]:.2f}" for n in names), recs, reqs,
                          f"{p50:.1f}", f"{p99:.1f}"])
            prev = s.t
    return windows


def plot(path: Path, sampler: Sampler, stats: Stats, args: argparse.Namespace) -> None:
    import matplotlib  # only the soak needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = sampler.samples[0].t
    minutes = [(s.t - t0) / 60 for s in sampler.samples]
    fig, (top, mid, low) = plt.subplots(3, 1, figsize=(10, 10), sharex=True,
                                        gridspec_kw={"height_ratios": [3, 2, 2]})
    half = minutes[-1] / 2
    for name in sampler.names:
        series = [s.rss[name] for s in sampler.samples]
        points = [(m, v) for m, v in zip(minutes, series, strict=True) if m >= half]
        label = f"{name} ({fit(points):+.2f} MiB/min over 2nd half)"
        (mid if name in ("broker", "generator") else top).plot(minutes, series, label=label)
    for ax, title in ((top, "onepipe worker processes: RSS (MiB)"),
                      (mid, "broker (tansu, memory storage: grows by design) and load "
                            "generator: RSS (MiB)")):
        ax.axvspan(half, minutes[-1], color="0.92", zorder=0)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    width = PLOT_WINDOW
    wins = [(a, *stats.between(t0 + a, t0 + a + width))
            for a in range(0, int(sampler.samples[-1].t - t0 - width / 2), int(width))]
    wt = [(a + width / 2) / 60 for a, *_ in wins]
    low.plot(wt, [percentile(w[3], 99) * 1000 if w[3] else 0.0 for w in wins],
             color="tab:red", label=f"p99 latency per {width:.0f}s (ms)")
    low.plot(wt, [percentile(w[3], 50) * 1000 if w[3] else 0.0 for w in wins],
             color="tab:orange", label=f"p50 latency per {width:.0f}s (ms)")
    low.set_ylabel("latency, ms")
    low.set_ylim(bottom=0)
    low.grid(alpha=0.3)
    rate = low.twinx()
    rates = [w[1] / width for w in wins]
    rate.plot(wt, rates, color="tab:blue", alpha=0.5, label="records/s answered")
    rate.set_ylabel("records/s")
    rate.set_ylim(0, max([*rates, args.rate]) * 1.3)  # above the latency legend
    lines = low.get_legend_handles_labels()
    more = rate.get_legend_handles_labels()
    low.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="lower right")
    low.set_title(f"open loop, {args.rate:,.0f} records/s offered (mix {args.mix_text})",
                  fontsize=10)
    low.set_xlabel("minutes (shaded: the half the flatness fit uses)")
    fig.suptitle(f"onepipe soak: {args.workers[0]} worker(s), "
                 f"{args.soak / 60:.3g} min, RSS sampled every {args.interval:g}s")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def parse_mix(text: str) -> list[int]:
    """``1:100,100:1`` -> 100 requests of 1 record, then 1 request of 100."""
    out: list[int] = []
    for part in text.split(","):
        size, _, count = part.partition(":")
        out += [int(size)] * int(count or 1)
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected SIZE:COUNT,... with sizes >= 1, got {text!r}")
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=20.0,
                   help="measured seconds per configuration (default 20)")
    p.add_argument("--warmup", type=float, default=3.0,
                   help="seconds of load before measuring (default 3)")
    p.add_argument("--clients", type=int, default=48,
                   help="concurrent connections (default 48; soak: connection limit)")
    p.add_argument("--workers", default=None,
                   help="worker counts to compare, e.g. 1,2 (default; soak: 1)")
    p.add_argument("--mix", default=None,
                   help="request sizes SIZE:COUNT,... cycled (default 1:100,100:1: half the "
                        "records one per request, half 100 per request; soak: 1:10,100:1)")
    p.add_argument("--keyspace", type=int, default=100_000,
                   help="distinct widget ids; versions rise as keys repeat (default 100000)")
    p.add_argument("--soak", type=float, default=0.0, metavar="S",
                   help="soak for S seconds at --rate instead of the default mode")
    p.add_argument("--rate", type=float, default=1000.0,
                   help="soak: offered records/s (default 1000)")
    p.add_argument("--interval", type=float, default=2.0,
                   help="soak: seconds between RSS samples (default 2)")
    p.add_argument("--out", type=Path, default=RESULTS,
                   help="soak: folder of soak_rss.png and soak_rss.csv (default bench/results)")
    p.add_argument("--name", default="soak_rss",
                   help="soak: file name of the PNG and CSV, without suffix (default soak_rss)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir with the logs")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                   help="before each configuration, wait up to S seconds for the rest of the "
                        "machine to go idle (other load skews every figure)")
    args = p.parse_args(argv)
    args.mix_text = args.mix or (SOAK_MIX if args.soak else LOAD_MIX)
    args.mix = parse_mix(args.mix_text)
    default = "1" if args.soak else "1,2"
    args.workers = [int(n) for n in (args.workers or default).split(",")]
    if min(args.workers) < 1 or (args.soak and len(args.workers) != 1):
        p.error("--workers: counts >= 1; the soak takes one count")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    install_sigterm()
    try:
        return soak_mode(args) if args.soak else default_mode(args)
    except KeyboardInterrupt:
        print("interrupted; broker and workers stopped", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, aiohttp.ClientError) as exc:
        print(f"error: {exc}\n(broker and workers stopped; --keep keeps their logs)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
