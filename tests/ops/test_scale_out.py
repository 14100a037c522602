"""Scale-out: identical ``onepipe worker`` processes share the work of one pipeline.

One worker, then a second and a third join, then the second leaves (SIGTERM), while a
producer keeps sending through whichever workers are up. Each change moves partitions of
every group (archive, dedup, checksums, sink); the test times how long until the work is
spread again and every group caught up, and ends with the full check: nothing
acknowledged missing, nothing twice in the raw lake, ``.unique`` or the sink, and
``onepipe verify`` agreeing.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.fixtures.pipeline_check import check_pipeline, make_pipeline, measure_recovery
from tests.fixtures.producer_loop import ProducerLoop, summary
from tests.fixtures.services import wait_for

PARTITIONS = 6


async def test_workers_joining_and_leaving_move_work_and_lose_nothing(
        broker: str, tmp_path: Path) -> None:
    pipeline = make_pipeline(broker, tmp_path, partitions=PARTITIONS)
    producer = ProducerLoop(pipeline.topic, pipeline.urls)
    recovery: dict[str, float] = {}
    try:
        first = pipeline.worker("w1")
        await wait_for(first.healthy, timeout=90, what="the first worker")
        producer.start()
        recovery["1 worker starts"] = await measure_recovery(pipeline, time.monotonic(),
                                                             "the first worker started")
        for name in ("w2", "w3"):
            since = time.monotonic()
            # A joiner that died at start would leave the work spread over the others:
            # healthy() fails the test if it exited (the recovery still counts from since).
            await wait_for(pipeline.worker(name).healthy, timeout=90, what=name)
            recovery[f"{name} joins"] = await measure_recovery(pipeline, since,
                                                               f"{name} joined")
            await producer.wait_acked(200)
        since = time.monotonic()
        await asyncio.to_thread(pipeline.workers["w2"].stop)
        recovery["w2 leaves (SIGTERM)"] = await measure_recovery(pipeline, since, "w2 left")
        await producer.wait_acked(200)
        await producer.finish()
        print("\n[scale-out] recovery (until partitions spread and every group caught up): "
              + ", ".join(f"{what} {seconds:.1f}s" for what, seconds in recovery.items())
              + f"; producer: {summary(producer.replies)}")
        await check_pipeline(pipeline, producer, "scale-out")
    finally:
        await producer.cancel()
        await asyncio.to_thread(pipeline.stop_all)
