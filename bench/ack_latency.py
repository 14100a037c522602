"""Produce-ack latency on tansu while group consumers tail: does a consumer client or
setting delay a producer's acks?

    .venv/bin/python bench/ack_latency.py [--clients aiokafka,librdkafka] [--consumers 0,1,3]
        [--rate 2000] [--duration 6] [--rounds 1] [--producer librdkafka|aiokafka]
        [--rd fetch.queue.backoff.ms=50 ...] [--opt fetch_max_wait_ms=500 ...]
        [--same-process] [--worker] [--trace FILE]

A fresh embedded tansu broker (memory storage) per case, three topics: ``ack-a`` (4
partitions, the produced one), ``ack-b`` (4) and ``ack-c`` (1), idle, as a worker's agents
tail the source topic and derived ones. Per case (consumer client x K):

1. K group consumers built by onepipe's factory (``KafkaClients.group_consumer``, the
   agents' settings) for that client, each in its own group subscribed to all three
   topics, looping ``getmany(timeout_ms=250, max_records=5000)`` and committing each
   batch as the batch agents do; in a child process (its CPU measured apart), or on the
   producer's event loop with ``--same-process``. ``--worker`` instead starts a full
   ``onepipe worker`` whose agents consume on that client, and produces to its
   ``widgets`` topic (Avro records the agents decode); its CPU is the "consumers" column.
2. idle: 3 s of tailing with nothing produced; CPU of the consumers and of the broker.
3. fixed: one producer (the endpoint's: the factory's, acks=all, the settings' linger)
   sends keyed records in an open loop at ``--rate`` records/s for ``--duration`` s:
   record i is due at t0 + i/rate and its latency runs from then to its ack (no
   coordinated omission). p50/p99/max, CPU of each process, and librdkafka's view of the
   producer's broker round trips (``rtt``: the broker's answer) against its own queues.

``--rd name=value`` adds librdkafka settings to the factory's consumer config (librdkafka
client only); ``--opt name=value`` passes a factory override (aiokafka's names, both
clients). Cases run ``--rounds`` times, alternating, because the machine is shared.

What it showed (2026-12-07, 2 shared cores, other load 60-170% of a core): the delays
are the broker's round trips, for either client, and they grow with how often the
tailers fetch: tansu's memory storage lists every stored batch of a partition on every
fetch pass, so its CPU per fetch grows with the log. fetch_max_wait_ms 10 made acks late
by 0.2-1 s (broker 77-86% of a core), 500 kept p50 under 5 ms (broker 30-45%).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    ProcStat,
    Services,
    install_sigterm,
    log,
    percentile,
    wait_groups_stable,
)
from onepipe.app.settings import load_settings  # noqa: E402
from onepipe.tables.kafka import clients as factory  # noqa: E402
from onepipe.tables.kafka.clients import KafkaClients  # noqa: E402
from onepipe.tables.kafka.topics import ensure_topic  # noqa: E402

TOPICS = {"ack-a": 4, "ack-b": 4, "ack-c": 1}
SOURCE = "ack-a"
IDLE_SECONDS = 3.0
#: Records sent so far: each phase goes on with new keys.
_SENT = itertools.count()


def parse_settings(pairs: Sequence[str]) -> dict[str, Any]:
    """``name=value`` pairs; values that read as integers become integers."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        out[name] = int(value) if value.lstrip("-").isdigit() else value
    return out


def kafka_clients(bootstrap: str, client: str) -> KafkaClients:
    """The factory as a bench worker gets it (tansu: no idempotence, 6 s group timeouts)."""
    return KafkaClients(bootstrap, idempotent=False, session_timeout=6.0,
                        rebalance_timeout=6.0, consumer_client=client)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- consumers


class Tailers:
    """K group consumers from the factory tailing every bench topic, as the agents do."""

    def __init__(self, bootstrap: str, client: str, count: int,
                 rd: Mapping[str, Any], opt: Mapping[str, Any]) -> None:
        self._kafka = kafka_clients(bootstrap, client)
        self._count = count
        self._opt = dict(opt)
        self._consumers: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []
        if rd:  # the factory's librdkafka config, plus the settings under test
            plain = factory.rdkafka_consumer_config

            def with_extra(options: dict[str, Any], security: Any) -> dict[str, Any]:
                return {**plain(options, security), **rd}

            factory.rdkafka_consumer_config = with_extra

    async def start(self, deadline: float = 60.0) -> None:
        run = uuid.uuid4().hex[:8]
        for i in range(self._count):  # one join at a time: tansu's joins (DESIGN.md)
            consumer = self._kafka.group_consumer(f"ack-{run}-{i}", **self._opt)
            await consumer.start()
            consumer.subscribe(list(TOPICS))
            self._consumers.append(consumer)
            self._tasks.append(asyncio.create_task(self._tail(consumer)))
            give_up = time.monotonic() + deadline
            while len(consumer.assignment()) < sum(TOPICS.values()):
                if time.monotonic() > give_up:
                    raise TimeoutError(f"consumer {i} had {consumer.assignment()} after "
                                       f"{deadline}s")
                await asyncio.sleep(0.05)  # awaiting the group's assignment

    @staticmethod
    async def _tail(consumer: Any) -> None:
        while True:  # a batch agent: fetch, then commit what it took (its durable write)
            batches = await consumer.getmany(timeout_ms=250, max_records=5000)
            if batches:
                await consumer.commit({tp: records[-1].offset + 1
                                       for tp, records in batches.items()})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for consumer in self._consumers:
            await consumer.stop()


async def child(args: argparse.Namespace) -> None:
    """The consumers' process: start, say ``ready``, tail until stdin closes."""
    tailers = Tailers(args.child, args.clients, args.count, parse_settings(args.rd),
                      parse_settings(args.opt))
    await tailers.start()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await tailers.stop()


# --------------------------------------------------------------------------- producer


@dataclass
class Result:
    client: str
    consumers: int
    p50: float
    p99: float
    max: float
    idle: dict[str, float]
    load: dict[str, float]
    other: float
    stats: str


def make_producer(kafka: KafkaClients, kind: str) -> Any:
    """The endpoint's producer (onepipe.app.runtime.make_producer's settings)."""
    settings = load_settings(broker=kafka.bootstrap, idempotent_producer=False)
    producer = kafka.batching_producer("bench-ack", kind, linger_ms=settings.linger_ms,
                                       max_request_bytes=max(settings.max_request_bytes,
                                                             1 << 20))
    if kind == "librdkafka":  # where an ack waited: librdkafka's own queues, or the broker
        producer.config.update({"statistics.interval.ms": 500, "stats_cb": STATS.add})
    return producer


class BrokerStats:
    """librdkafka producer statistics of the broker connection, per interval (µs)."""

    def __init__(self) -> None:
        self.samples: list[dict[str, float]] = []
        self.recording = False

    def add(self, text: str) -> None:
        if not self.recording:
            return
        for broker in json.loads(text)["brokers"].values():
            if broker.get("nodeid", -1) >= 0 and broker["rtt"]["cnt"]:
                self.samples.append({f"{k}_{q}": broker[k][q] for k in (
                    "rtt", "int_latency", "outbuf_latency") for q in ("p50", "p99")})

    def brief(self) -> str:
        if not self.samples:
            return ""
        def worst(name: str) -> float:
            return max(s[name] for s in self.samples) / 1000
        def median(name: str) -> float:
            return percentile([s[name] for s in self.samples], 50) / 1000
        return (f"broker rtt p50 {median('rtt_p50'):.1f} (worst {worst('rtt_p50'):.1f}) "
                f"p99 worst {worst('rtt_p99'):.1f} ms; queue int p99 worst "
                f"{worst('int_latency_p99'):.1f}, outbuf p99 worst "
                f"{worst('outbuf_latency_p99'):.1f} ms")


STATS = BrokerStats()


def plain_records(n: int = 10_000) -> list[tuple[bytes, bytes]]:
    """Keyed 200-byte values for the bench topics."""
    value = os.urandom(200)
    return [(f"widget-{i:06d}".encode(), value) for i in range(n)]


async def widgets_records(worker_url: str, n: int = 20_000) -> list[tuple[bytes, bytes]]:
    """``widgets`` records as the endpoint writes them (Confluent-framed Avro, keyed), so a
    worker's agents decode, deduplicate and count them."""
    import aiohttp  # only the --worker mode needs these

    from bench.produce import make_record
    from onepipe.schemas.avro_schema import parse_schema
    from onepipe.schemas.codec import KeyEncoder, encode_body, frame
    from onepipe.schemas.validation import compile_converter

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{worker_url}/subjects/widgets-value/versions/latest") as r:
            latest = await r.json()
        async with http.get(f"{worker_url}/topics/widgets/metadata") as r:
            meta = await r.json()
    schema = parse_schema(latest["schema"])
    datums, errors = compile_converter(schema).convert_many(
        [make_record(10_000_000 + i) for i in range(n)])
    if errors:
        raise RuntimeError(f"bench records do not validate: {errors[:3]}")
    keys = KeyEncoder(schema, meta["key"])
    return [(keys.encode(d), frame(int(latest["id"]), encode_body(schema, d))) for d in datums]


async def fixed_rate(producer: Any, rate: float, duration: float, topic: str,
                     records: Sequence[tuple[bytes, bytes]]) -> list[float]:
    """Ack latency (s) of each record of an open loop at ``rate`` records/s."""
    loop = asyncio.get_running_loop()
    n = int(rate * duration)
    latencies = [0.0] * n
    futures = []
    t0 = loop.time() + 0.05
    i = 0
    while i < n:
        now = loop.time()
        due = t0 + i / rate
        if due > now:
            await asyncio.sleep(due - now)
            now = loop.time()
        while i < n and t0 + i / rate <= now:  # every record due by now, each its own time
            key, value = records[next(_SENT) % len(records)]
            future = await producer.send(topic, value, key=key)
            future.add_done_callback(
                lambda _f, i=i, due=t0 + i / rate: latencies.__setitem__(i, loop.time() - due))
            futures.append(future)
            i += 1
    await asyncio.gather(*futures)
    return latencies


async def measure(bootstrap: str, broker_pid: int | None, tailers_pid: int | None,
                  args: argparse.Namespace, tailers: Tailers | None,
                  worker_url: str | None = None) -> tuple[list[float], ProcStat, ProcStat]:
    kafka = kafka_clients(bootstrap, "aiokafka")
    producer = make_producer(kafka, args.producer)
    await producer.start()
    try:
        if tailers is not None:
            await tailers.start()
        topic, records = SOURCE, plain_records()
        if worker_url is not None:
            topic, records = "widgets", await widgets_records(worker_url)
        pids = {"consumers": tailers_pid, "broker": broker_pid}
        await fixed_rate(producer, args.rate, 0.5, topic, records)  # warm: connections
        await asyncio.sleep(1.0)  # the agents' (or tailers') batches of the warm-up
        with ProcStat(pids) as idle:
            await asyncio.sleep(IDLE_SECONDS)
        STATS.samples.clear()
        STATS.recording = True
        with ProcStat(pids) as load:
            latencies = await fixed_rate(producer, args.rate, args.duration, topic, records)
        STATS.recording = False
        return latencies, idle, load
    finally:
        if tailers is not None:
            await tailers.stop()
        await producer.stop()


def run_case(services: Services, client: str, count: int,
             args: argparse.Namespace) -> Result:
    """One case: K tailers of ``client`` (a child process unless --same-process)."""
    proc: subprocess.Popen[str] | None = None
    tailers: Tailers | None = None
    rd, opt = parse_settings(args.rd), parse_settings(args.opt)
    if args.worker:  # a full worker's agents on ``client`` instead of bare tailers
        env = {"ONEPIPE_KAFKA_CONSUMER_CLIENT": client}
        worker = services.start_worker(env)
        asyncio.run(wait_groups_stable(services.bootstrap, ["onepipe", "onepipe-archive"]))
        latencies, idle, load = asyncio.run(measure(
            services.bootstrap, services.broker_pid, worker.pid, args, None, worker.url))
        return result(client, count, latencies, idle, load, args)
    if count and args.same_process:
        tailers = Tailers(services.bootstrap, client, count, rd, opt)
    elif count:
        argv = [sys.executable, __file__, "--child", services.bootstrap, "--clients", client,
                "--count", str(count)]
        argv += [f"--rd={p}" for p in args.rd] + [f"--opt={p}" for p in args.opt]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # noqa: S603
                                text=True)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            proc.kill()
            raise RuntimeError(f"{client} tailers did not start (exit {proc.wait()})")
    try:
        latencies, idle, load = asyncio.run(measure(
            services.bootstrap, services.broker_pid,
            proc.pid if proc else (os.getpid() if tailers else None),
            args, tailers))
    finally:
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.communicate("", timeout=30)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return result(client, count, latencies, idle, load, args)


def result(client: str, count: int, latencies: list[float], idle: ProcStat, load: ProcStat,
           args: argparse.Namespace) -> Result:
    ms = [x * 1000 for x in latencies]
    if args.trace:
        with Path(args.trace).open("a") as out:
            out.write(json.dumps({"client": client, "consumers": count, "rate": args.rate,
                                  "ms": [round(x, 2) for x in ms]}) + "\n")
    return Result(client, count, percentile(ms, 50), percentile(ms, 99), max(ms),
                  idle.cpu_pct, load.cpu_pct, load.other_pct, STATS.brief())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default="aiokafka,librdkafka")
    p.add_argument("--consumers", default="0,1,3", help="K values, comma-separated")
    p.add_argument("--rate", type=float, default=2000.0, help="records/s (default 2000)")
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--producer", default="librdkafka", choices=["librdkafka", "aiokafka"])
    p.add_argument("--rd", action="append", default=[], help="librdkafka consumer setting")
    p.add_argument("--opt", action="append", default=[], help="factory override")
    p.add_argument("--same-process", action="store_true",
                   help="consumers on the producer's loop (as in a worker)")
    p.add_argument("--worker", action="store_true",
                   help="a full onepipe worker whose agents consume on each client, "
                        "producing to its widgets topic (K ignored)")
    p.add_argument("--trace", help="write each case's latencies (ms, in send order) here")
    p.add_argument("--child", help=argparse.SUPPRESS)  # bootstrap: run as the tailers
    p.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        asyncio.run(child(args))
        return 0
    install_sigterm()
    results: list[Result] = []
    for _ in range(args.rounds):
        for count in (int(k) for k in args.consumers.split(",")):
            for client in args.clients.split(",") if count else ["-"]:
                log(f"  {client} x {count} ...")
                # A broker per case: tansu's memory storage lists every stored batch of a
                # partition on each fetch, so a broker holding earlier cases' records
                # would make later cases slower.
                with Services() as services:
                    services.start_broker()
                    kafka = kafka_clients(services.bootstrap, "aiokafka")
                    for name, partitions in TOPICS.items():
                        asyncio.run(ensure_topic(kafka, name, partitions=partitions,
                                                 replication_factor=1))
                    results.append(run_case(services, client, count, args))
                r = results[-1]
                log(f"  = p50 {r.p50:.1f} p99 {r.p99:.1f} max {r.max:.1f} ms; {r.stats}")
    settings = " ".join([*args.rd, *args.opt]) or "factory settings"
    print(f"\nack latency, {args.producer} producer at {args.rate:.0f} rec/s for "
          f"{args.duration:.0f} s; consumers: {settings}"
          f"{' (same process)' if args.same_process else ''}; "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'consumers':16} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}   CPU % idle "
          f"(consumers / broker)   CPU % load (consumers / broker / other)")
    for r in results:
        print(f"{r.client + ' x ' + str(r.consumers):16} {r.p50:7.1f} {r.p99:7.1f} "
              f"{r.max:7.1f}   {r.idle['consumers']:5.1f} / {r.idle['broker']:5.1f}"
              f"                 {r.load['consumers']:5.1f} / {r.load['broker']:5.1f} / "
              f"{r.other:5.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
