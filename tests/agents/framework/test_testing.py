"""The test kit (onepipe.testing): an agent in-process, no broker, real validation and state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import onepipe
from onepipe.agents.framework.example import price_alerts
from onepipe.schemas.errors import ConfigError, RecordValidationError
from onepipe.testing import AgentTest

CATALOG = Path(__file__).resolve().parents[3] / "catalog"
T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)

EVENTS: dict[str, Any] = {
    "type": "record", "name": "Sale", "namespace": "test.kit", "fields": [
        {"name": "id", "type": "string"},
        {"name": "shop", "type": "string"},
        {"name": "amount", "type": "long"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ]}
ROLLUP: dict[str, Any] = {
    "type": "record", "name": "ShopHour", "namespace": "test.kit", "fields": [
        {"name": "shop", "type": "string"},
        {"name": "hour", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "amount", "type": "long"},
    ]}
TOPICS = {
    "kit-sales": (EVENTS, {"partitions": 2, "key": ["id"], "order": {"rule": "first"},
                           "partition_time": "at"}),
    "kit-shop-hours": (ROLLUP, {"partitions": 1, "key": ["shop", "hour"],
                                "order": {"rule": "first"}, "partition_time": "hour"}),
}


@dataclass(frozen=True, slots=True)
class Sale:
    id: str
    shop: str
    amount: int
    at: datetime


def sale(n: int, shop: str, amount: int, at: datetime) -> dict[str, Any]:
    return {"id": f"s{n}", "shop": shop, "amount": amount, "at": at}


hours = onepipe.WindowTable(
    "hours", window=onepipe.tumbling(timedelta(hours=1)), grace=timedelta(minutes=5),
    default=0, to="kit-shop-hours",
    emit=lambda shop, window, amount: {"shop": shop, "hour": window.start, "amount": amount})
sales = onepipe.Table("sales", default=0)


@onepipe.batch_agent("kit-sales", name="test-kit-hours", record=Sale, tables=[hours, sales])
async def shop_hours(batch: onepipe.Batch[Sale]) -> None:
    for s in batch:
        hours.add(s.shop, s.amount)
        sales[s.shop] += 1


async def test_the_example_agent_sends_validated_alerts_for_expensive_widgets() -> None:
    widget = {"widget_id": "w1", "version": 1, "name": "bolt", "price": 10.0,
              "updated_at": T0, "colour": "RED", "tags": []}
    async with AgentTest(price_alerts, catalog=CATALOG) as t:
        await t.feed("widgets", [widget, {**widget, "version": 2, "price": 1500.0}])
        assert t.sent("widget_price_alerts") == [
            {"widget_id": "w1", "version": 2, "price": 1500.0,
             "reason": "price 1500.00 >= 1000.00"}]
        with pytest.raises(RecordValidationError):  # validated like the produce endpoint
            await t.feed("widgets", {**widget, "price": "free"})


async def test_a_window_table_emits_closed_windows_and_drops_late_records() -> None:
    async with AgentTest(shop_hours, topics=TOPICS) as t:
        first = [sale(1, "a", 5, T0), sale(2, "a", 7, T0 + timedelta(minutes=30))]
        await t.feed("kit-sales", first, partition=0)
        await t.feed("kit-sales", [sale(3, "b", 1, T0)], partition=1)
        assert t.sent("kit-shop-hours") == []  # nothing closed yet
        # Partition 0 moves past 11:05 (the 10:00 window's end + grace): it closes there.
        await t.feed("kit-sales", [sale(4, "a", 2, T0 + timedelta(hours=1, minutes=6))],
                     partition=0)
        assert t.sent("kit-shop-hours") == [{"shop": "a", "hour": T0, "amount": 12}]
        # A record of the closed hour is late: counted, not added, but the agent sees it.
        await t.feed("kit-sales", [sale(5, "a", 100, T0 + timedelta(minutes=59))], partition=0)
        assert t.late == 1
        assert t.table(sales, partition=0) == {"a": 4}
        windows = t.table(hours)
        assert [(k, w.start, v) for (k, w), v in sorted(windows.items(), key=str)] == [
            ("a", T0 + timedelta(hours=1), 2), ("b", T0, 1)]
        # Partition 1's stream time only moves with its own records, or by advance().
        await t.advance(T0 + timedelta(hours=2), partition=1)
        assert t.sent("kit-shop-hours")[-1] == {"shop": "b", "hour": T0, "amount": 1}
        assert t.table(hours, partition=1) == {}


async def test_records_are_placed_by_their_unique_key_as_the_endpoint_does() -> None:
    async with AgentTest(shop_hours, topics=TOPICS) as t:
        await t.feed("kit-sales", [sale(n, "a", 1, T0) for n in range(40)])
        per_partition = [t.table(sales, partition=p).get("a", 0) for p in (0, 1)]
        assert sum(per_partition) == 40
        assert all(per_partition), per_partition  # 40 keys spread over both partitions


async def test_the_kit_refuses_what_a_worker_would_refuse_at_start() -> None:
    @dataclass(frozen=True)
    class Wrong:
        id: str
        amount: str  # a long in the schema

    @onepipe.batch_agent("kit-sales", name="test-kit-wrong-type", record=Wrong)
    async def wrong(batch: onepipe.Batch[Wrong]) -> None:
        pass

    with pytest.raises(ConfigError, match="amount"):
        AgentTest(wrong, topics=TOPICS)
    with pytest.raises(ConfigError, match="kit-sales"):
        AgentTest(shop_hours, topics={"kit-shop-hours": TOPICS["kit-shop-hours"]})
