"""Hourly revenue of ``widgets``: the agent the README's walkthrough builds.

Topics in: ``widgets`` (the catalog's). Topic out: ``widget_revenue_hourly`` (declared in
``catalog/``, so it is archived, deduplicated and verified like any topic).

Every widget version adds its price to the hour of its ``updated_at`` (the topic's
partition time), per colour, in a one-hour tumbling window table that accepts records up
to ten minutes late. When stream time passes an hour's end plus that grace, the hour is
closed and sent as one record. Like every onepipe table, the window table is per input
partition (``widgets`` is keyed by ``widget_id``), so each record is one partition's share
of the hour: the rows of ``widget_revenue_hourly`` add up to the hour's revenue
(``onepipe sql "SELECT hour, colour, sum(revenue) FROM widget_revenue_hourly GROUP BY
ALL"``).

Delivery: the window state is exactly-once through restarts and rebalances; a closed hour
may be sent again after a crash, identical (same key), and ``<topic>.unique`` keeps one.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import onepipe
from widget_rollups.widgets import Widget

__all__ = ["SOURCE", "TARGET", "hourly_revenue", "revenue", "revenue_row"]

SOURCE = "widgets"
TARGET = "widget_revenue_hourly"


def revenue_row(key: tuple[int, str], hour: onepipe.Window, value: list[float]
                ) -> dict[str, Any]:
    """The record a closed hour becomes: pure, so it is tested directly."""
    partition, colour = key
    versions, total = value
    return {"hour": hour.start, "colour": colour, "partition": partition,
            "versions": int(versions), "revenue": round(total, 2)}


def _empty() -> list[float]:
    return [0, 0.0]


revenue = onepipe.WindowTable(
    "revenue", window=onepipe.tumbling(timedelta(hours=1)), grace=timedelta(minutes=10),
    default=_empty, to=TARGET, emit=revenue_row)


@onepipe.batch_agent(SOURCE, name="widget-revenue-hourly", record=Widget, tables=[revenue])
async def hourly_revenue(batch: onepipe.Batch[Widget]) -> None:
    for widget in batch:  # taking a value makes its updated_at the current time
        revenue.update((batch.partition, widget.colour), _adding(widget.price))


def _adding(price: float) -> Any:
    def add(value: list[float]) -> list[float]:
        return [value[0] + 1, value[1] + price]

    return add
