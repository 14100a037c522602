"""Example developer agent: price alerts derived from ``widgets``.

Topics in: ``widgets``. Topic out: ``widget_price_alerts`` (both in ``catalog/``).
Every widget version priced at or above :data:`ALERT_PRICE` becomes an alert record;
the send goes through the registry, so the alert is validated like any produced record.
Delivery: at-least-once (a restart may repeat alerts; the alert's unique key, widget id
plus version, makes repeats identical so dedup downstream removes them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from onepipe.agents.streams.api import Record, StreamApi

SOURCE_TOPIC = "widgets"
ALERT_TOPIC = "widget_price_alerts"
#: Widgets at or above this price raise an alert.
ALERT_PRICE = 1000.0


def alert_for(widget: dict[str, object]) -> dict[str, object] | None:
    """The alert record for a widget version, or None: pure, so it is tested directly."""
    price = widget.get("price")
    if not isinstance(price, int | float) or price < ALERT_PRICE:
        return None
    return {
        "widget_id": widget["widget_id"],
        "version": widget["version"],
        "price": float(price),
        "reason": f"price {price:.2f} >= {ALERT_PRICE:.2f}",
    }


def register(streams: StreamApi) -> None:
    """Declare the example agent on a worker's stream API."""

    @streams.agent(SOURCE_TOPIC, name="onepipe.example.price_alerts")
    async def price_alerts(records: AsyncIterator[Record]) -> None:
        async for record in records:
            alert = alert_for(record.value)
            if alert is not None:
                await streams.send(ALERT_TOPIC, alert)
