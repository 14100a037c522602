"""The stream API's implementation over Faust; the contract is the package's
(onepipe.agents.streams)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust

from onepipe.schemas.codec import decode
from onepipe.schemas.errors import CodecError, NotFoundError
from onepipe.schemas.registry_state import RegistryState
from onepipe.sinks.publish.publisher import Delivery, Publisher

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded Kafka record of a registered topic."""

    #: Source topic.
    topic: str
    #: Source partition.
    partition: int
    #: Offset in the partition.
    offset: int
    #: Kafka record timestamp, epoch milliseconds.
    timestamp_ms: int
    #: Raw key bytes (the encoded unique key), or None.
    key: bytes | None
    #: The value as a dict shaped by the topic's latest schema.
    value: dict[str, Any]
    #: The id of the schema the producer wrote with.
    schema_id: int


AgentFn = Callable[[AsyncIterator[Record]], Awaitable[None]]


class StreamApi:
    """Declares developer agents on a Faust app and sends through the registry."""

    def __init__(
        self, app: faust.App, state: RegistryState, publisher: Publisher, ready: asyncio.Event
    ) -> None:
        self._app = app
        self._state = state
        self._publisher = publisher
        self._ready = ready
        self.undecodable = 0
        self._topics: set[str] = set()

    def agent(self, topic: str, *, name: str | None = None) -> Callable[[AgentFn], AgentFn]:
        """Decorate ``async def fn(records)`` to run over ``topic``'s decoded records."""

        def decorate(fn: AgentFn) -> AgentFn:
            channel = self._app.topic(topic, key_serializer="raw", value_serializer="raw")
            self._topics.add(topic)

            async def run(stream: faust.StreamT) -> None:
                await self._ready.wait()  # the registry is replayed before anything decodes
                await fn(self._decoded(topic, stream))

            agent_name = name or f"{fn.__module__}.{fn.__name__}"
            run.__qualname__ = run.__name__ = agent_name  # what Faust shows in its logs
            self._app.agent(channel, name=agent_name)(run)
            return fn

        return decorate

    def subscribes_to(self, topic: str) -> bool:
        """Whether an agent declared so far reads ``topic`` (the app's group reads it)."""
        return topic in self._topics

    async def _decoded(self, topic: str, stream: faust.StreamT) -> AsyncIterator[Record]:
        async for event in stream.events():
            msg = event.message
            try:
                reader = self._state.reader_schema(topic)
                schema_id, value = decode(msg.value, self._state.schema_by_id, reader)
            except (CodecError, NotFoundError) as exc:
                self.undecodable += 1
                log.warning("skipping undecodable record %s[%d]@%d: %s",
                            msg.topic, msg.partition, msg.offset, exc.message)
                continue
            yield Record(msg.topic, msg.partition, msg.offset, msg.timestamp or 0, msg.key,
                         value, schema_id)

    async def send(self, topic: str, records: dict[str, Any] | Sequence[dict[str, Any]]
                   ) -> list[Delivery]:
        """Validate and produce one record or a list, like ``POST /topics/{t}/records``."""
        await self._ready.wait()
        batch = [records] if isinstance(records, dict) else list(records)
        return await self._publisher.publish(topic, batch)
