"""The walkthrough's test: the hourly revenue agent under onepipe's test kit, no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from onepipe.testing import AgentTest
from widget_rollups import TARGET, hourly_revenue, revenue

CATALOG = Path(__file__).resolve().parents[3] / "catalog"
TEN = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def widget(n: int, price: float, at: datetime, colour: str = "RED") -> dict[str, object]:
    return {"widget_id": f"w{n}", "version": 1, "name": f"widget {n}", "price": price,
            "colour": colour, "updated_at": at}


async def test_an_hour_is_sent_once_its_grace_has_passed() -> None:
    async with AgentTest(hourly_revenue, catalog=CATALOG) as t:
        await t.feed("widgets", [widget(1, 10.0, TEN), widget(2, 2.5, TEN + timedelta(minutes=59)),
                                 widget(3, 4.0, TEN, colour="BLUE")], partition=0)
        assert t.sent(TARGET) == []  # 10:00-11:00 is still open
        # 11:09 is within the grace: a late 10:xx version still counts ...
        await t.feed("widgets", [widget(4, 1.0, TEN + timedelta(hours=1, minutes=9)),
                                 widget(5, 100.0, TEN + timedelta(minutes=30))], partition=0)
        assert t.sent(TARGET) == []
        # ... until stream time reaches 11:10: the hour closes and is sent.
        await t.advance(TEN + timedelta(hours=1, minutes=10), partition=0)
        assert sorted(t.sent(TARGET), key=lambda r: str(r["colour"])) == [
            {"hour": TEN, "colour": "BLUE", "partition": 0, "versions": 1, "revenue": 4.0},
            {"hour": TEN, "colour": "RED", "partition": 0, "versions": 3, "revenue": 112.5},
        ]
        # A version of 10:xx now is late: dropped from the table, counted.
        await t.feed("widgets", widget(6, 7.0, TEN + timedelta(minutes=5)), partition=0)
        assert t.late == 1
        assert [(key, window.start, value) for (key, window), value in t.table(revenue).items()
                ] == [((0, "RED"), TEN + timedelta(hours=1), [1, 1.0])]
