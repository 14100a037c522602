"""The test kit for developers' agents: run one agent in-process, with no broker.

    from onepipe.testing import AgentTest

    async def test_rollup() -> None:
        async with AgentTest(hourly_revenue, catalog="catalog") as t:
            await t.feed("widgets", [{"widget_id": "w1", ...}])
            await t.advance(datetime(2026, 12, 6, 13, tzinfo=UTC))
            assert t.sent("widget_revenue_hourly") == [...]
            assert t.table(revenue) == {...}

See :class:`AgentTest` (implemented in onepipe.agents.framework.testing) for what is real
and what is not. Like ``onepipe`` itself, the names here are kept stable.
"""

from onepipe.agents.framework.testing import AgentTest

__all__ = ["AgentTest"]
