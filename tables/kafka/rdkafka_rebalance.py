"""librdkafka's rebalance callbacks of the group consumer (onepipe.tables.kafka.rdkafka_consumer).

Apart from the consumer because they are the one delicate part (its module docstring has
the contract): an assignment is handed to librdkafka only after the agent's listener
positioned it on the event loop, with what the listener paused paused in the same
breath; a revoke gives the partitions back only after the listener made its work
durable. Both run on the handle's thread inside ``consume()``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from typing import Any

import confluent_kafka
from aiokafka import ConsumerRebalanceListener, TopicPartition

from onepipe.tables.kafka.rdkafka_thread import HandleThread

__all__ = ["RebalanceCallbacks"]

log = logging.getLogger("onepipe.tables.kafka.rdkafka_consumer")


class RebalanceCallbacks:
    """The ``on_assign``/``on_revoke`` of a consumer's librdkafka handle."""

    # The consumer's state these callbacks read and write (set in its __init__).
    _config: dict[str, Any]
    #: The loop's side: "started" until stop() begins.
    _state: str
    _listener: ConsumerRebalanceListener | None
    _closing: bool
    _subscribed: bool
    _rejoining: bool
    _assigned: frozenset[TopicPartition]
    _paused: frozenset[TopicPartition]
    _highwaters: dict[TopicPartition, int]
    _assigning: dict[TopicPartition, int] | None
    _positions: dict[TopicPartition, int]

    def _thread_of(self) -> HandleThread:
        raise NotImplementedError

    @staticmethod
    def _ctp(tp: TopicPartition, offset: int = confluent_kafka.OFFSET_INVALID
             ) -> confluent_kafka.TopicPartition:
        return confluent_kafka.TopicPartition(tp.topic, tp.partition, offset)

    def _on_assign(self, consumer: confluent_kafka.Consumer,
                   partitions: list[confluent_kafka.TopicPartition]) -> None:
        tps = {TopicPartition(p.topic, p.partition) for p in partitions}
        self._rejoining = False
        log.info("group %s assigned %s to this member", self._config.get("group.id"),
                 _names(tps))
        self._assigned, self._paused = frozenset(tps), frozenset()
        self._assigning = dict.fromkeys(tps, confluent_kafka.OFFSET_STORED)
        try:
            self._call_listener("on_partitions_assigned", tps)
        finally:
            offsets, self._assigning = self._assigning, None
            # Not assigned until the listener positioned them; the ones it left paused are
            # paused before librdkafka's fetcher ever sees them unpaused.
            consumer.assign([self._ctp(tp, offset) for tp, offset in offsets.items()])
            paused = [self._ctp(tp) for tp in tps if tp in self._paused]
            if paused:
                consumer.pause(paused)
            # librdkafka keeps a partition's pause across unassign and assign: one paused
            # in an earlier assignment (a failed listener's) would never be fetched again.
            resumed = [self._ctp(tp) for tp in tps if tp not in self._paused]
            if resumed:
                consumer.resume(resumed)

    def _on_revoke(self, consumer: confluent_kafka.Consumer,
                   partitions: list[confluent_kafka.TopicPartition]) -> None:
        log.info("group %s revokes %s from this member%s", self._config.get("group.id"),
                 _names(self._assigned), " (closing)" if self._closing else "")
        try:
            self._call_listener("on_partitions_revoked", set(self._assigned))
        finally:
            # Only now does librdkafka give them up: the listener made them durable first.
            consumer.unassign()
            self._rejoining = self._subscribed  # it joins again (unless it is leaving)
            self._assigned, self._paused, self._highwaters = frozenset(), frozenset(), {}
            self._positions.clear()

    def _call_listener(self, method: str, tps: set[TopicPartition]) -> None:
        """Run the listener's ``method`` on the event loop; serve its calls meanwhile."""
        listener = self._listener
        if listener is None or self._closing or self._state != "started":
            # Stopping (the loop's side may begin before the thread's _close runs): a
            # join round that ends meanwhile is not the listener's any more - as aiokafka,
            # a consumer that is leaving calls no listener (its pause() would fail).
            return
        callback = getattr(listener, method)

        async def call() -> None:
            if self._closing or self._state != "started":
                return  # the stop began on the loop's side while this waited for the loop
            result = callback(tps)
            if inspect.isawaitable(result):
                await result

        failure = self._thread_of().wait_for(call())
        if failure is not None:
            # aiokafka logs what a listener raises, too; the agents record their own.
            log.error("%s of group %s failed for %s", method, self._config.get("group.id"),
                      _names(tps), exc_info=failure)


def _names(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps)) or "nothing"
