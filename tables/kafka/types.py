"""What a consumer-group member offers the parts that own one: :class:`GroupConsumer`.

Contract: the subset of aiokafka's ``AIOKafkaConsumer`` the batch agents and the
compaction workers call, which both kinds :meth:`KafkaClients.group_consumer
<onepipe.tables.kafka.clients.KafkaClients.group_consumer>` builds provide with the same
types and guarantees (``AIOKafkaConsumer`` itself, and the librdkafka adapter
onepipe.tables.kafka.rdkafka_consumer): records keyed by aiokafka ``TopicPartition``,
aiokafka's errors, the listener's callbacks before partitions are fetched or given up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition

__all__ = ["GroupConsumer"]


class GroupConsumer(Protocol):
    """A member of a consumer group (aiokafka's API, the subset onepipe uses)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def subscribe(self, topics: Iterable[str],
                  listener: ConsumerRebalanceListener | None = None) -> None: ...

    def unsubscribe(self) -> None: ...

    async def getmany(self, *, timeout_ms: int = 0, max_records: int | None = None
                      ) -> Mapping[TopicPartition, Sequence[ConsumerRecord[Any, Any]]]: ...

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...

    def seek(self, partition: TopicPartition, offset: int) -> None: ...

    async def seek_to_beginning(self, *partitions: TopicPartition) -> Any: ...

    async def seek_to_committed(self, *partitions: TopicPartition) -> Any: ...

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None: ...

    async def committed(self, partition: TopicPartition) -> int | None: ...

    def assignment(self) -> set[TopicPartition]: ...

    def highwater(self, partition: TopicPartition) -> int | None: ...

    async def topics(self) -> set[str]: ...
