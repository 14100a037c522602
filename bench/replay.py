"""Replay (``onepipe replay``) against the raw produce ceiling, measured in one run on one broker.

    .venv/bin/python bench/replay.py [--records N] [--runs R] [--before REV] [--client C]

1. Writes a local raw lake of N archived records (~200-byte values, keyed, 4 partitions,
   files of 10,000 records, no headers; ``--headers`` gives every record two) as the
   archive writes it (onepipe.sinks.formats.raw), once.
2. The ceiling: raw ``confluent_kafka.Producer`` producing the same keys and values
   (bench/ceilings.py), in this process, before and after the replays (its mean is the
   ratio's denominator; the two show how the machine drifted), with its CPU µs a record
   (this process: the produce() loop, librdkafka's threads, the delivery callbacks).
3. Replays of the whole lake into a fresh 4-partition topic, each in a child process
   (``--child``) timed from the first file read to the last acknowledgement, alternating
   the code at ``--before`` (agents/replay/replay.py as it was there, loaded from git;
   default: the commit before replay's batch send) with the working tree's, R rounds.
   The child's producer is the CLI's (make_producer's settings: ``--client``, linger 2 ms),
   and so is its garbage collector: the worker's thresholds where that code's ``onepipe
   replay`` sets them (app/cli.py), Python's default where it does not.
   Per run: records/s, its ratio to the ceiling, and CPU µs a record of the replay process
   (all its threads, librdkafka's included) and of the broker - the figures to trust on a
   shared, noisy machine, where a busy neighbour moves every wall-clock rate (the CPU
   ratio is the ceiling's CPU a record over the replay's).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402

from bench.ceilings import rdkafka_ceiling  # noqa: E402
from bench.common import Services, machine_facts, tree_cpu  # noqa: E402
from bench.summary import record  # noqa: E402
from onepipe.app.runtime import GC_THRESHOLDS  # noqa: E402
from onepipe.sinks.formats.raw import (  # noqa: E402
    RawColumns,
    build_raw_table_from_columns,
    encode_parquet,
)
from onepipe.sinks.lake import open_lake  # noqa: E402
from onepipe.sinks.lake.raw_layout import hour_bucket, raw_file_path  # noqa: E402
from onepipe.tables.kafka import KafkaClients, ensure_topic  # noqa: E402

#: The commit before replay's batch send (the code ``--before`` loads by default).
BEFORE = "f2fca37"
PARTITIONS = 4
FILE_RECORDS = 10_000
LINGER_MS = 2  # the CLI's producer (Settings.linger_ms default)
BASE_MS = 1_764_151_200_000
SOURCE = "bench-replay-source"


def data_set(records: int, value_bytes: int) -> list[tuple[bytes, bytes]]:
    """The archived records: Confluent-framed random values, keys like the endpoint's."""
    return [(f"widget-{i:010d}".encode(), b"\x00\x00\x00\x00\x01" + os.urandom(value_bytes - 5))
            for i in range(records)]


async def write_lake(url: str, records: list[tuple[bytes, bytes]], headers: bool) -> int:
    """Raw files of ``records`` (record i in partition i % 4), as the archive writes them."""
    files = 0
    async with open_lake(url) as lake:
        for p in range(PARTITIONS):
            mine = records[p::PARTITIONS]
            for first in range(0, len(mine), FILE_RECORDS):
                part = mine[first:first + FILE_RECORDS]
                n = len(part)
                stamps = [BASE_MS + (first + i) * PARTITIONS + p for i in range(n)]
                columns = RawColumns(
                    SOURCE, p, pa.array(range(first, first + n), pa.int64()),
                    pa.array(stamps, pa.int64()), pa.array([k for k, _ in part], pa.binary()),
                    pa.array([v for _, v in part], pa.binary()),
                    [(("origin", b"lake"), ("n", str(first + i).encode())) for i in range(n)]
                    if headers else None)
                table = build_raw_table_from_columns(
                    columns, pa.nulls(n, pa.int32()), pa.nulls(n, pa.string()), None)
                date, hour = hour_bucket(stamps[0])
                await lake.put(raw_file_path(SOURCE, p, date, hour, first, first + n - 1),
                               encode_parquet(table))
                files += 1
    return files


def cli_sets_gc(rev: str | None) -> bool:
    """Whether ``onepipe replay`` at ``rev`` (None: the working tree) sets the worker's
    collector thresholds."""
    source = (ROOT / "app" / "cli.py").read_text() if rev is None else subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:app/cli.py"], capture_output=True,
        text=True, check=True).stdout
    return "gc.set_threshold(*GC_THRESHOLDS)" in source


def load_before(rev: str) -> ModuleType:
    """agents/replay/replay.py as it was at ``rev``, as a module of its own."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:agents/replay/replay.py"],
                            capture_output=True, text=True, check=True).stdout
    with tempfile.TemporaryDirectory(prefix="onepipe-bench-replay-") as folder:
        path = Path(folder) / "replay_before.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("replay_before", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while it runs
        spec.loader.exec_module(module)
    return module


async def child(args: argparse.Namespace) -> dict[str, Any]:
    """One replay in this process; its wall seconds and this process's CPU seconds."""
    if args.code == "before":
        replay = load_before(args.before).replay
    else:
        from onepipe.agents.replay import replay  # noqa: PLC0415 - the working tree's
    if cli_sets_gc(args.before if args.code == "before" else None):
        gc.set_threshold(*GC_THRESHOLDS)
    kafka = KafkaClients(args.bootstrap, idempotent=False, request_timeout=60.0)
    # make_producer's settings (onepipe.app.runtime): the CLI's producer.
    producer = kafka.batching_producer("bench-replay", args.client, linger_ms=LINGER_MS,
                                       max_request_bytes=8 * 1024 * 1024)
    await producer.start()
    try:
        async with open_lake(args.lake) as lake:
            await producer.partitions_for(args.target)  # connections before the clock
            t0, c0 = time.perf_counter(), time.process_time()
            summary = await replay(lake, producer, SOURCE, to_topic=args.target)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        await producer.stop()
    return {"records": summary.records, "seconds": seconds, "cpu": cpu}


def run_child(args: argparse.Namespace, code: str, target: str, broker_pid: int
              ) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", code, "--bootstrap", args.bootstrap,
               "--lake", args.lake, "--target", target, "--before", args.before,
               "--client", args.client]
    broker0 = tree_cpu(broker_pid)
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode:
        raise SystemExit(f"replay child ({code}) failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["broker_cpu"] = tree_cpu(broker_pid) - broker0
    return result


async def topic(kafka: KafkaClients, name: str) -> str:
    await ensure_topic(kafka, name, partitions=PARTITIONS, replication_factor=1)
    return name


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=300_000)
    p.add_argument("--value-bytes", type=int, default=200)
    p.add_argument("--runs", type=int, default=3, help="rounds of before + after")
    p.add_argument("--before", default=BEFORE, help="git revision of the 'before' code")
    p.add_argument("--client", default="librdkafka", choices=["librdkafka", "aiokafka"])
    p.add_argument("--headers", action="store_true", help="two headers on every record")
    p.add_argument("--only", choices=["before", "after"], help="replay only this code")
    p.add_argument("--child", choices=["before", "after"], help=argparse.SUPPRESS)
    p.add_argument("--bootstrap", help=argparse.SUPPRESS)
    p.add_argument("--lake", help=argparse.SUPPRESS)
    p.add_argument("--target", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.code = args.child
        print(json.dumps(asyncio.run(child(args))))
        return 0
    records = data_set(args.records, args.value_bytes)
    codes = [args.only] if args.only else ["before", "after"]
    rows: list[tuple[str, dict[str, Any]]] = []
    with Services() as services, tempfile.TemporaryDirectory(prefix="onepipe-lake-") as tmp:
        services.start_broker()
        broker_pid = services.broker_pid or 0
        args.bootstrap, args.lake = services.bootstrap, Path(tmp).as_uri()
        kafka = KafkaClients(args.bootstrap, idempotent=False, request_timeout=60.0)
        files = asyncio.run(write_lake(args.lake, records, args.headers))
        n = 0

        def fresh() -> str:
            nonlocal n
            n += 1
            return asyncio.run(topic(kafka, f"bench-replay-{n}"))

        def ceiling_run() -> tuple[float, float]:
            """(records/s, CPU µs a record) of the raw producer."""
            target, c0 = fresh(), time.process_time()
            seconds = rdkafka_ceiling(kafka, target, records, LINGER_MS)
            return len(records) / seconds, 1e6 * (time.process_time() - c0) / len(records)

        ceilings = [ceiling_run()]
        for r in range(args.runs):
            # Alternate which code goes first, so a trend in the machine's load favours
            # neither.
            for code in codes if r % 2 == 0 else codes[::-1]:
                rows.append((code, run_child(args, code, fresh(), broker_pid)))
                print(f"  {code:<6} {rows[-1][1]['records'] / rows[-1][1]['seconds']:>10,.0f}"
                      f" rec/s", file=sys.stderr)
        ceilings.append(ceiling_run())
    ceiling = statistics.mean(rate for rate, _ in ceilings)
    ceiling_cpu = statistics.mean(cpu for _, cpu in ceilings)
    facts = machine_facts()
    print(f"\n{len(records):,} archived records of {args.value_bytes} B in {files} files, "
          f"{PARTITIONS} partitions{', 2 headers each' if args.headers else ''}; producer "
          f"{args.client}, linger {LINGER_MS} ms; {facts['cores']} cores, load "
          f"{os.getloadavg()[0]:.1f}; before = {args.before}")
    print(f"  raw confluent_kafka.Producer (ceiling) {ceilings[0][0]:,.0f} / "
          f"{ceilings[1][0]:,.0f} rec/s (first / last), CPU {ceilings[0][1]:.2f} / "
          f"{ceilings[1][1]:.2f} µs/rec")
    print(f"  {'code':<6} {'rec/s':>10} {'ratio':>6} {'replay CPU µs/rec':>18} "
          f"{'CPU ratio':>9} {'broker CPU µs/rec':>18}")
    for code, m in rows:
        rate = m["records"] / m["seconds"]
        cpu, broker_cpu = 1e6 * m["cpu"] / m["records"], 1e6 * m["broker_cpu"] / m["records"]
        print(f"  {code:<6} {rate:>10,.0f} {rate / ceiling:>6.2f} {cpu:>18.2f} "
              f"{ceiling_cpu / cpu:>9.2f} {broker_cpu:>18.2f}")
    for code in codes:
        mine = [m for c, m in rows if c == code]
        cpu = sorted(1e6 * m["cpu"] / m["records"] for m in mine)
        rate = statistics.median(m["records"] / m["seconds"] for m in mine)
        print(f"  {code:<6} median {rate:>10,.0f} rec/s, ratio {rate / ceiling:.2f}; "
              f"replay CPU µs/rec {' / '.join(f'{c:.2f}' for c in cpu)} (CPU ratio at the "
              f"median {ceiling_cpu / statistics.median(cpu):.2f})")
        record(f"replay ({code})", f"{rate / ceiling:.2f} of librdkafka ({rate:,.0f} rec/s)",
               note=f"median of {len(mine)} run(s); ceiling: raw confluent_kafka.Producer "
                    f"{ceiling:,.0f} rec/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
