"""Faults survived while a producer keeps sending through the HTTP endpoint.

Each test runs real ``onepipe worker`` processes (archive, dedup, checksums and a
PostgreSQL sink), starts :class:`~tests.fixtures.producer_loop.ProducerLoop`, injects one
fault for a while, lifts it, and ends with
:func:`~tests.fixtures.pipeline_check.check_pipeline`: the pipeline caught up by itself,
every record acknowledged with 2xx is in every system, nothing is there twice, and
``onepipe verify`` agrees. The faults: (a) SIGKILL of one of two workers and its restart;
(b) every broker connection dropped (a TCP proxy the broker advertises); (c) the S3 API
failing, then stalling (an HTTP proxy in front of moto); (d) the sink database going away
(a TCP proxy in front of PostgreSQL - the machine's server is shared and never restarted).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from onepipe.sinks.lake import S3Options, open_lake
from onepipe.sinks.lake.inventory import raw_inventory
from tests.fixtures.pipeline_check import (
    Pipeline,
    check_pipeline,
    make_pipeline,
    measure_recovery,
)
from tests.fixtures.producer_loop import ProducerLoop, summary
from tests.fixtures.s3_proxy import S3FaultProxy
from tests.fixtures.services import wait_for
from tests.fixtures.tcp_proxy import ProxiedBroker, TcpProxy

PARTITIONS = 4
#: ONEPIPE_PRODUCE_TIMEOUT of the workers (make_pipeline): the bound of a produce request.
PRODUCE_TIMEOUT = 5.0
#: Consumer-group session and rebalance timeouts of these workers (make_pipeline's 6 s
#: halved; heartbeats every second). tansu holds a join for half the session and drops a
#: SIGKILLed member (or one a failed agent left behind) only after it, so every rebalance
#: a fault causes settles in half the time; what the checks require is the same.
GROUP_TIMEOUT = "3"


def faults_pipeline(bootstrap: str, tmp_path: Path, **options: Any) -> Pipeline:
    """make_pipeline with :data:`PARTITIONS` and :data:`GROUP_TIMEOUT`."""
    return make_pipeline(bootstrap, tmp_path, partitions=PARTITIONS,
                         ONEPIPE_SESSION_TIMEOUT=GROUP_TIMEOUT,
                         ONEPIPE_REBALANCE_TIMEOUT=GROUP_TIMEOUT, **options)


def producer_for(pipeline: Pipeline, produce_timeout: float = PRODUCE_TIMEOUT) -> ProducerLoop:
    # A reply later than twice the produce timeout (plus scheduling slack on a busy
    # machine) is a hang; the endpoint itself gives up after the workers' produce timeout.
    return ProducerLoop(pipeline.topic, pipeline.urls, request_timeout=2 * produce_timeout + 5)


async def archived(pipeline: Pipeline) -> bool:
    """Whether the raw lake holds records of the topic yet."""
    async with open_lake(pipeline.lake_url, pipeline.s3) as lake:
        return (await raw_inventory(lake, pipeline.topic)).records > 0


async def test_sigkill_of_one_of_two_workers_and_its_restart_lose_nothing(
        broker: str, tmp_path: Path) -> None:
    pipeline = faults_pipeline(broker, tmp_path)
    producer = producer_for(pipeline)
    try:
        workers = {name: pipeline.worker(name) for name in ("w1", "w2")}  # both start now
        for name, worker in workers.items():
            await wait_for(worker.healthy, timeout=90, what=name)
        producer.start()
        await measure_recovery(pipeline, time.monotonic(), "two workers started")
        await producer.wait_acked(300)
        pipeline.workers["w2"].kill()
        killed_at = time.monotonic()
        await producer.wait_acked(300)
        left = await measure_recovery(pipeline, killed_at, "w2 was killed")
        restarted_at = time.monotonic()
        pipeline.worker("w2")
        back = await measure_recovery(pipeline, restarted_at, "w2 restarted")
        await producer.wait_acked(200)
        await producer.finish()
        print(f"\n[sigkill] recovery: after SIGKILL {left:.1f}s, after the restart {back:.1f}s;"
              f" producer: {summary(producer.replies)}")
        await check_pipeline(pipeline, producer, "sigkill")
    finally:
        await producer.cancel()
        await asyncio.to_thread(pipeline.stop_all)
    assert not [r for r in producer.replies if r.timed_out], "a produce request hung"


async def test_broker_connections_cut_give_503_with_retry_after_and_lose_nothing(
        proxied_broker: ProxiedBroker, tmp_path: Path) -> None:
    proxy = proxied_broker.proxy
    # Each request refused during the cut takes the produce timeout, then the producer
    # honours Retry-After (2 s): the three awaited cost 3 x (timeout + 2) s of cut.
    produce_timeout = 2.0
    pipeline = faults_pipeline(proxied_broker.bootstrap, tmp_path,
                               ONEPIPE_PRODUCE_TIMEOUT=str(produce_timeout))
    producer = producer_for(pipeline, produce_timeout)
    try:
        await wait_for(pipeline.worker("w1").healthy, timeout=90, what="worker")
        producer.start()
        await measure_recovery(pipeline, time.monotonic(), "the worker started")
        await producer.wait_acked(300)
        cut_at = time.monotonic()
        proxy.cut()

        def refused() -> int:
            return sum(1 for r in producer.replies_between(cut_at, float("inf"))
                       if r.status != 200)

        await wait_for(lambda: refused() >= 3, timeout=90,
                       what="three produce requests refused while the broker is cut off")
        restored_at = time.monotonic()
        proxy.restore()
        during = producer.replies_between(cut_at, restored_at)
        await producer.wait_acked(300, timeout=180)
        caught = await measure_recovery(pipeline, restored_at, "the broker came back")
        await producer.finish()
        print(f"\n[broker cut] cut for {restored_at - cut_at:.1f}s ({proxy.refused} connections"
              f" refused); during the cut: {summary(during)}; recovery after restore "
              f"{caught:.1f}s")
        await check_pipeline(pipeline, producer, "broker cut")
    finally:
        proxy.restore()
        await producer.cancel()
        await asyncio.to_thread(pipeline.stop_all)
    refusals = [r for r in during if r.status != 200]
    assert refusals, "no request was refused while the broker was cut off"
    assert all(r.status == 503 and r.retry_after is not None and
               r.code == "broker_unavailable" for r in refusals), refusals
    assert not [r for r in producer.replies if r.timed_out], "a produce request hung"


async def test_s3_failing_then_stalling_loses_nothing(
        broker: str, tmp_path: Path, s3_proxy: S3FaultProxy, s3_lake_url: str,
        s3_options: S3Options) -> None:
    pipeline = faults_pipeline(broker, tmp_path, lake_url=s3_lake_url, s3=s3_options,
                               ONEPIPE_S3_ENDPOINT_URL=s3_proxy.url)
    producer = producer_for(pipeline)
    try:
        await wait_for(pipeline.worker("w1").healthy, timeout=90, what="worker")
        producer.start()
        await wait_for(lambda: archived(pipeline), timeout=90, what="raw files in S3")
        for status in (503, 500):
            s3_proxy.fail(status)
            target = s3_proxy.failed + 5

            def answered(target: int = target) -> bool:
                return s3_proxy.failed >= target

            await wait_for(answered, timeout=60, what=f"S3 requests answered {status}")
            await producer.wait_acked(200)
            s3_proxy.restore()
        s3_proxy.stall()
        await wait_for(lambda: s3_proxy.stalled >= 2, timeout=60, what="S3 requests held")
        await producer.wait_acked(300)
        restored_at = time.monotonic()
        s3_proxy.restore()
        caught = await measure_recovery(pipeline, restored_at, "S3 came back")
        await producer.finish()
        print(f"\n[s3] {s3_proxy.failed} requests failed (503, then 500), {s3_proxy.stalled} "
              f"stalled, {s3_proxy.forwarded} forwarded; recovery after the stall "
              f"{caught:.1f}s; producer: {summary(producer.replies)}")
        await check_pipeline(pipeline, producer, "s3 faults")
    finally:
        s3_proxy.restore()
        await producer.cancel()
        await asyncio.to_thread(pipeline.stop_all)


async def sink_state(pipeline: Pipeline) -> str:
    (worker,) = pipeline.alive()
    async with aiohttp.ClientSession() as http, http.get(worker.url + "/sinks") as resp:
        (sink,) = (await resp.json())["sinks"]
    return str(sink["state"])


async def test_sink_database_going_away_loses_nothing(broker: str, tmp_path: Path) -> None:
    async with TcpProxy("127.0.0.1", 5432) as pg_proxy:
        pipeline = faults_pipeline(
            broker, tmp_path, sink_dsn=f"postgresql://postgres@{pg_proxy.address}/test")
        producer = producer_for(pipeline)
        try:
            await wait_for(pipeline.worker("w1").healthy, timeout=90, what="worker")
            producer.start()
            await measure_recovery(pipeline, time.monotonic(), "the worker started")
            await producer.wait_acked(300)
            pg_proxy.cut()

            async def failing() -> bool:
                return await sink_state(pipeline) == "failing"

            await wait_for(failing, timeout=90, what="the sink to notice its database is gone")
            await producer.wait_acked(300)
            restored_at = time.monotonic()
            pg_proxy.restore()
            caught = await measure_recovery(pipeline, restored_at, "PostgreSQL came back")
            await producer.finish()
            print(f"\n[sink db] {pg_proxy.refused} connections refused while away; recovery "
                  f"after it came back {caught:.1f}s; producer: {summary(producer.replies)}")
            await check_pipeline(pipeline, producer, "sink db")
        finally:
            pg_proxy.restore()
            await producer.cancel()
            await asyncio.to_thread(pipeline.stop_all)
