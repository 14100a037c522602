"""The dedup agent's counters and its winner hook type (no behaviour; shared by its modules).

Counters only ever grow while the agent lives (``positions`` follows the assignment);
the worker exports them at scrape time (onepipe.app.web.metrics.CounterSource) and in
``/health``, so nothing is recorded per record for monitoring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import TopicPartition

__all__ = ["DedupMetrics", "WinnerHook"]

#: ``on_winner(topic, partition, key, old_value, new_value)``: called once per key whose
#: winner changed, after the new winner is durable in ``.unique`` and in the table.
WinnerHook = Callable[[str, int, bytes, bytes | None, bytes], None]


@dataclass(slots=True)
class DedupMetrics:
    """Counters of one dedup agent (exported by the worker's metrics view)."""

    #: Records consumed from source and repartition topics.
    consumed: int = 0
    #: Winners produced to ``.unique``.
    winners: int = 0
    #: Versions equal in rank to their key's winner (re-deliveries, retries).
    duplicates: int = 0
    #: Versions ranked below their key's winner (out of order, stale).
    losers: int = 0
    #: Versions that led their key within a batch but lost to a later one of it.
    superseded: int = 0
    #: Records that did not decode (skipped).
    undecodable: int = 0
    #: Records forwarded to ``.repartition`` (sent to a non-canonical partition).
    repartitioned: int = 0
    #: Changelog messages folded into tables during recovery.
    recovered: int = 0
    #: Times the consume loop restarted after a failure.
    restarts: int = 0
    #: Next offset to consume, per source/repartition partition assigned here.
    positions: dict[TopicPartition, int] = field(default_factory=dict)
