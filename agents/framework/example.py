"""Example developer agent: price alerts derived from ``widgets``.

Topics in: ``widgets``. Topic out: ``widget_price_alerts`` (both in ``catalog/``).
Every widget version priced at or above :data:`ALERT_PRICE` becomes an alert record,
validated like any produced record. Loaded only with ``ONEPIPE_EXAMPLE_AGENTS`` (on in
``onepipe dev``): a production worker must not read a demo topic. Delivery:
at-least-once (a restart may repeat alerts; the alert's unique key, widget id plus
version, makes repeats identical so dedup downstream removes them).
"""

from __future__ import annotations

from typing import Any

from onepipe.agents.framework.declare import agent
from onepipe.agents.framework.stream import Stream

__all__ = ["ALERT_PRICE", "ALERT_TOPIC", "SOURCE_TOPIC", "alert_for", "price_alerts"]

SOURCE_TOPIC = "widgets"
ALERT_TOPIC = "widget_price_alerts"
#: Widgets at or above this price raise an alert.
ALERT_PRICE = 1000.0


def alert_for(widget: dict[str, Any]) -> dict[str, Any] | None:
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


@agent(SOURCE_TOPIC, name="onepipe.example.price_alerts", sends=[ALERT_TOPIC])
async def price_alerts(stream: Stream[dict[str, Any]]) -> None:
    async for widget in stream:
        alert = alert_for(widget)
        if alert is not None:
            await stream.send(ALERT_TOPIC, alert)
