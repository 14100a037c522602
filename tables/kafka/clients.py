"""The one Kafka client factory: every producer, consumer and admin client is built here.

Why one place: connection settings (bootstrap servers, and TLS and SASL from
:class:`~onepipe.tables.kafka.security.KafkaSecurity`) must reach every client, and a
change of client library for the hot paths (aiokafka -> librdkafka) is a change of this
module, not of eleven. Parts receive a :class:`KafkaClients` and ask it for the kind of
client they need; nothing else names ``AIOKafkaProducer``, ``AIOKafkaConsumer`` or
``AIOKafkaAdminClient`` (the Faust app gets the same security settings from
onepipe.app.worker).

The kinds, and the settings each carries for a reason:

- :meth:`KafkaClients.producer`: ``acks=all`` and idempotence where the broker supports
  it (``idempotent``; tansu answers InitProducerId with an error, DESIGN.md), bounded by
  ``request_timeout`` so a dead broker fails a write instead of hanging it.
- :meth:`KafkaClients.rdkafka_producer`: the same producer on librdkafka (confluent-kafka)
  behind an asyncio adapter (onepipe.tables.kafka.rdkafka_producer), for the hot paths:
  the same acks, idempotence, timeout and security, in librdkafka's names. :data:`Producer`
  is either kind; :meth:`KafkaClients.batching_producer` builds the kind a setting names;
  :func:`broker_count` asks either whether the cluster answers.
- :meth:`KafkaClients.group_consumer`: a member of a consumer group that commits only when
  its owner says so (manual commits: the batch agents commit after their own durable
  write), with the short group timeouts brokers that hold joins need, heartbeats at a
  third of the session (at most 1 s) and a generous poll interval (a batch may wait for a
  lake write). On librdkafka (``consumer_client="librdkafka"``) it is an
  :class:`~onepipe.tables.kafka.rdkafka_consumer.RdkafkaConsumer` with the same API and
  the same settings in librdkafka's names (the overrides too), handing records over as
  columns (onepipe.tables.kafka.record_columns); aiokafka's for the other.
- :meth:`KafkaClients.reader`: a group-less consumer for ``assign()``-style reads "to the
  end" (registry replay, state recovery, verify, lag): never ``auto_offset_reset="latest"``,
  which resets through ListOffsets(latest), wrong on tansu.
- :meth:`KafkaClients.admin`: topic creation and description.

Every method takes keyword ``overrides`` passed to aiokafka as they are, for the few
settings one part needs differently (a partition assignor, fetch sizes). The connection's
security options are applied after them: no part can open a connection with other TLS or
SASL settings than the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from onepipe.tables.kafka.rdkafka_consumer import RdkafkaConsumer
from onepipe.tables.kafka.rdkafka_producer import RdkafkaProducer
from onepipe.tables.kafka.security import KafkaSecurity

__all__ = ["KafkaClients", "Producer", "broker_count"]

#: A producer of either kind; both take the same calls (send, send_and_wait, flush, ...).
Producer: TypeAlias = AIOKafkaProducer | RdkafkaProducer


async def broker_count(producer: Producer) -> int:
    """How many brokers answer a metadata request on ``producer``'s own connections
    (a request for the whole cluster: it creates no topic)."""
    if isinstance(producer, RdkafkaProducer):
        return await producer.broker_count()
    return len((await producer.client.fetch_all_metadata()).brokers())


@dataclass(frozen=True, slots=True)
class KafkaClients:
    """How onepipe reaches Kafka; see the module docstring."""

    #: Bootstrap servers, comma-separated ``host:port``.
    bootstrap: str
    #: Idempotent producers (need InitProducerId: on for Apache Kafka, off for tansu).
    idempotent: bool = True
    #: Seconds a request (a produce's acks, above all) may take before it fails.
    request_timeout: float = 30.0
    #: Consumer-group session timeout, seconds.
    session_timeout: float = 10.0
    #: Consumer-group rebalance timeout, seconds.
    rebalance_timeout: float = 10.0
    #: TLS and SASL of every connection (PLAINTEXT by default).
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    #: The client of :meth:`group_consumer`: librdkafka (the default) or aiokafka.
    #: librdkafka fetches on its own threads and hands records over as columns
    #: (record_columns): the agents' event loop spends 1-3 µs a record less than on
    #: aiokafka, which builds every record on the loop (BENCHMARKS.md, "Hot paths, fifth
    #: pass"). It holds ~30-60 MiB more (its prefetch queue, bounded below).
    consumer_client: Literal["librdkafka", "aiokafka"] = "librdkafka"

    @property
    def servers(self) -> list[str]:
        """The bootstrap servers as a list."""
        return [s.strip() for s in self.bootstrap.split(",") if s.strip()]

    def producer(self, client_id: str, **overrides: Any) -> AIOKafkaProducer:
        """An ``acks=all`` producer, idempotent when the broker supports it."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": self.idempotent,
            "request_timeout_ms": int(self.request_timeout * 1000),
        }
        options.update(overrides)
        options.update(self.security.client_options())
        return AIOKafkaProducer(**options)

    def rdkafka_producer(self, client_id: str, *, linger_ms: int = 5,
                         batch_bytes: int = 1024 * 1024,
                         overrides: Mapping[str, Any] | None = None) -> RdkafkaProducer:
        """:meth:`producer`'s settings on librdkafka; ``overrides`` in librdkafka's names."""
        timeout_ms = int(self.request_timeout * 1000)
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "client.id": client_id,
            "acks": "all",
            "enable.idempotence": self.idempotent,
            # Java's (and aiokafka's) murmur2 of the key: a key lands in the same partition
            # whichever client wrote it (librdkafka's default hashes with CRC32).
            "partitioner": "murmur2_random",
            "request.timeout.ms": timeout_ms,
            # aiokafka bounds a batch's wait by request_timeout_ms; librdkafka's bound on a
            # record (retries included) is this one.
            "message.timeout.ms": timeout_ms,
            "linger.ms": linger_ms,
            "batch.size": batch_bytes,
            "message.max.bytes": batch_bytes,
            # aiokafka's buffer is bounded in bytes only; a 100k-record request must fit.
            "queue.buffering.max.messages": 1_000_000,
            # Nagle's algorithm holds a small produce request behind an unacknowledged one
            # (up to the peer's delayed ACK, ~40 ms): asyncio's sockets, aiokafka's, have
            # TCP_NODELAY; librdkafka's do not by default.
            "socket.nagle.disable": True,
        }
        config.update(overrides or {})
        config.update(self.security.librdkafka_options())
        return RdkafkaProducer(config, timeout=self.request_timeout)

    def batching_producer(self, client_id: str, client: str, *, linger_ms: int,
                          max_request_bytes: int) -> Producer:
        """The produce endpoint's producer: 1 MiB batches, requests up to
        ``max_request_bytes``, on ``client`` (``librdkafka`` or ``aiokafka``)."""
        if client == "librdkafka":
            return self.rdkafka_producer(client_id, linger_ms=linger_ms,
                                         overrides={"message.max.bytes": max_request_bytes})
        return self.producer(client_id, linger_ms=linger_ms, max_batch_size=1024 * 1024,
                             max_request_size=max_request_bytes)

    def group_consumer(self, group_id: str, *, client_id: str | None = None,
                       **overrides: Any) -> AIOKafkaConsumer | RdkafkaConsumer:
        """A member of ``group_id`` that commits only when its owner says so."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "group_id": group_id,
            "client_id": client_id or group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": int(self.session_timeout * 1000),
            "rebalance_timeout_ms": int(self.rebalance_timeout * 1000),
            # At most 1 s: a member learns of a join round from a heartbeat's answer, and
            # the librdkafka consumer waits one heartbeat before it leaves (tansu keeps a
            # member leaving inside a round as its leader for good; rdkafka_consumer): at
            # 2-3 s that wait was most of every agent's stop.
            "heartbeat_interval_ms": int(min(1.0, self.session_timeout / 3) * 1000),
            "max_poll_interval_ms": 300_000,
            # A member tailing a topic fetches at most every fetch_max_wait_ms unless 256 KiB
            # are ready: with 1 byte (the default) every record produced woke every tailing
            # agent, one fetch, one tiny batch and one commit each. Measured with the
            # produce bench's single-record phase (one worker, its agents tailing): 1,401
            # -> 3,022 req/s, fixed-rate p99 152 -> 39 ms; the broker's CPU 87% -> 56%.
            # The price: at low rates a hop waits up to fetch_max_wait_ms for its records
            # (source -> dedup -> .unique -> sink is two or three hops); a consumer that
            # wants each record at once (the compaction worker's tasks) passes 1.
            "fetch_max_wait_ms": 200,
            "fetch_min_bytes": 256 * 1024,
            "max_partition_fetch_bytes": 4 * 1024 * 1024,
        }
        options.update(overrides)
        if self.consumer_client == "librdkafka":
            return RdkafkaConsumer(rdkafka_consumer_config(options, self.security),
                                   timeout=self.request_timeout)
        options.update(self.security.client_options())
        return AIOKafkaConsumer(**options)

    def reader(self, client_id: str, **overrides: Any) -> AIOKafkaConsumer:
        """A group-less consumer for assigned partitions, read from the earliest offset."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "client_id": client_id,
            "group_id": None,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "fetch_max_wait_ms": 50,
        }
        options.update(overrides)
        options.update(self.security.client_options())
        return AIOKafkaConsumer(**options)

    def admin(self, client_id: str = "onepipe-admin") -> AIOKafkaAdminClient:
        """An admin client (create and describe topics)."""
        return AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=client_id,
                                   **self.security.client_options())


#: aiokafka consumer options and their librdkafka names (the values are the same).
_RDKAFKA_NAMES = {
    "bootstrap_servers": "bootstrap.servers", "group_id": "group.id",
    "client_id": "client.id", "enable_auto_commit": "enable.auto.commit",
    "auto_offset_reset": "auto.offset.reset", "session_timeout_ms": "session.timeout.ms",
    "heartbeat_interval_ms": "heartbeat.interval.ms",
    "max_poll_interval_ms": "max.poll.interval.ms", "fetch_max_wait_ms": "fetch.wait.max.ms",
    "max_partition_fetch_bytes": "max.partition.fetch.bytes",
    "fetch_min_bytes": "fetch.min.bytes",
}


def rdkafka_consumer_config(options: dict[str, Any], security: KafkaSecurity
                            ) -> dict[str, Any]:
    """A group consumer's aiokafka ``options`` as librdkafka configuration."""
    config: dict[str, Any] = {
        # Offsets are stored and committed only by explicit commit() calls.
        "enable.auto.offset.store": False,
        # aiokafka's default assignor: a group mixing both clients (a rolling upgrade)
        # agrees on a protocol. Eager, see onepipe.tables.kafka.rdkafka_consumer.
        "partition.assignment.strategy": "roundrobin",
        # What librdkafka holds in its own threads beside the agent's buffers (the RSS
        # budget): its prefetch queue, and one fetch response in flight per broker.
        # Measured, archive of 2 KB records: 32 and 64 MiB held 490-544 MiB of RSS, 16 MiB
        # 352-396, 8 MiB 343-352 (the bound is 406). The agents batch on their own side:
        # a prefetch of one fetch ahead is what librdkafka's queue is for.
        "queued.max.messages.kbytes": 8 * 1024,
        "fetch.max.bytes": 16 * 1024 * 1024,
        # Once a partition's queue passed queued.min.messages, its next fetch waits this
        # long (default 1 s): a consumer catching up drained its queue and idled for the
        # rest of the second (measured: 240k rec/s at 1 s, 730k at 10 ms, 200-byte records).
        "fetch.queue.backoff.ms": 10,
    }
    for name, value in options.items():
        if name == "rebalance_timeout_ms":
            continue  # librdkafka's join uses max.poll.interval.ms as the rebalance timeout
        if name == "partition_assignment_strategy":
            config["partition.assignment.strategy"] = ",".join(a.name for a in value)
        elif name in _RDKAFKA_NAMES:
            config[_RDKAFKA_NAMES[name]] = value
        else:
            raise TypeError(f"group_consumer() got {name}={value!r}, which has no librdkafka "
                            f"name here; add it to _RDKAFKA_NAMES ({', '.join(_RDKAFKA_NAMES)})")
    config.update(security.librdkafka_options())
    return config
