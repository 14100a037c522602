"""Small Kafka helpers every stateful part needs: create a topic, read a partition to its end.

"To the end" means the fetch response's high watermark (``consumer.highwater``), never
``end_offsets()``: tansu answers ListOffsets(latest) with the base offset of the last
record batch + 1 (DESIGN.md), and the high watermark is what Kafka's own lag metrics use,
correct on Apache Kafka too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from onepipe.schemas.errors import BrokerError
from onepipe.tables.kafka.clients import KafkaClients

log = logging.getLogger(__name__)


async def ensure_topic(
    kafka: KafkaClients,
    name: str,
    *,
    partitions: int,
    replication_factor: int,
    configs: Mapping[str, str] | None = None,
) -> int:
    """Create ``name`` if missing; return its partition count (existing or new)."""
    admin = kafka.admin()
    try:
        await admin.start()
        existing = await _partition_count(admin, name)
        if existing:
            return existing
        try:
            await admin.create_topics(
                [NewTopic(name, partitions, replication_factor, topic_configs=dict(configs or {}))]
            )
            log.info("created topic %s with %d partition(s)", name, partitions)
        except TopicAlreadyExistsError:
            pass  # another worker created it between our look and our create
        for _ in range(50):
            count = await _partition_count(admin, name)
            if count:
                return count
            await asyncio.sleep(0.1)  # metadata propagation; bounded
        raise BrokerError(f"topic {name!r} was created but never appeared in metadata")
    except KafkaError as exc:
        raise BrokerError(f"could not create topic {name!r} on {kafka.bootstrap}: {exc!r}") from exc
    finally:
        await admin.close()


async def read_topic(
    kafka: KafkaClients,
    topic: str,
    on_batch: Callable[[list[ConsumerRecord[Any, Any]]], Awaitable[None] | None],
    *,
    client_id: str = "onepipe-reader",
) -> bool:
    """Read every partition of ``topic`` from its beginning to its fetch high watermark.

    False (nothing read) when the topic does not exist: it is looked up in a whole-cluster
    listing, never named in a metadata request (that would create it). Kafka errors
    become :class:`BrokerError` naming the topic and the broker.
    """
    consumer = kafka.reader(client_id)
    try:
        await consumer.start()
        if topic not in await consumer.topics():
            return False
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                         or ())]
        if tps:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
        for tp in tps:
            await read_to_end(consumer, tp, on_batch)
        return True
    except (KafkaError, OSError) as exc:
        raise BrokerError(f"could not read {topic} on {kafka.bootstrap}: {exc!r}") from exc
    finally:
        await consumer.stop()


async def topic_exists(kafka: KafkaClients, topic: str) -> bool:
    """Whether ``topic`` exists, from a whole-cluster listing (never auto-creates it)."""
    consumer = kafka.reader("onepipe-topics")
    try:
        await consumer.start()
        return topic in await consumer.topics()
    except (KafkaError, OSError) as exc:
        raise BrokerError(f"could not list topics on {kafka.bootstrap}: {exc!r}") from exc
    finally:
        await consumer.stop()


async def _partition_count(admin: AIOKafkaAdminClient, name: str) -> int:
    # Describe only listed topics: a metadata request for a missing topic auto-creates it
    # on brokers with auto-creation on (tansu always; Kafka by default), with the wrong
    # partition count.
    if name not in await admin.list_topics():
        return 0
    described = await admin.describe_topics([name])
    for topic in described:
        if topic.get("topic") == name and topic.get("error_code", 0) == 0:
            return len(topic.get("partitions", []))
    return 0


async def read_to_end(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    on_batch: Callable[[list[ConsumerRecord[Any, Any]]], Awaitable[None] | None],
    *,
    poll_ms: int = 200,
) -> int:
    """Consume ``tp`` from the consumer's position until the fetch high watermark.

    Returns the high watermark reached. ``on_batch`` may be sync or async.
    """
    while True:
        batches = await consumer.getmany(tp, timeout_ms=poll_ms, max_records=5000)
        for records in batches.values():
            result = on_batch(records)
            if result is not None:
                await result
        highwater = consumer.highwater(tp)
        if highwater is not None and await consumer.position(tp) >= highwater:
            return highwater


async def high_watermarks(kafka: KafkaClients, partitions: Iterable[TopicPartition], *,
                          within: float = 10.0, client_id: str = "onepipe-highwater"
                          ) -> dict[TopicPartition, int]:
    """Each partition's end: the fetch response's high watermark (0 for an empty one).

    A short-lived group-less reader fetches every partition from its beginning once; never
    ListOffsets(latest), which tansu answers wrongly. The caller names partitions that
    exist (a metadata request naming a missing topic creates it). :class:`BrokerError` when
    the broker cannot be reached or does not answer within ``within`` seconds.
    """
    tps = sorted(set(partitions))
    if not tps:
        return {}
    # One record per partition is all a fetch needs to bring its high watermark.
    consumer = kafka.reader(client_id, max_partition_fetch_bytes=64 * 1024)
    try:
        await consumer.start()
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        return await fetch_high_watermarks(consumer, tps, bootstrap=kafka.bootstrap,
                                           within=within)
    except (KafkaError, OSError) as exc:
        raise BrokerError(f"cannot fetch from {kafka.bootstrap} to read the end of "
                          f"{_shown(tps)}: {exc!r}") from exc
    finally:
        await consumer.stop()


async def fetch_high_watermarks(consumer: AIOKafkaConsumer, tps: list[TopicPartition], *,
                                bootstrap: str, within: float) -> dict[TopicPartition, int]:
    """Fetch ``tps`` (assigned to ``consumer`` and positioned) until each one's high
    watermark is known; :class:`BrokerError` past ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pending = list(tps)
    while pending:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise BrokerError(
                f"no fetch answer from {bootstrap} for {_shown(pending)} within "
                f"{within:.0f}s; is the broker overloaded or the partition leaderless?")
        # The high watermark comes with every fetch response, records or not.
        await consumer.getmany(*pending, timeout_ms=int(min(remaining, 0.2) * 1000),
                               max_records=1)
        pending = [tp for tp in pending if consumer.highwater(tp) is None]
    return {tp: int(consumer.highwater(tp)) for tp in tps}


def _shown(tps: list[TopicPartition]) -> str:
    shown = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in tps[:5])
    return shown + (f" and {len(tps) - 5} more" if len(tps) > 5 else "")
