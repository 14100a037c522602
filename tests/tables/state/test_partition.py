"""PartitionState and the tables on it: pending, commit, discard, windows, late records."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onepipe.schemas.errors import ConfigError
from onepipe.tables.state import (
    CURRENT,
    PartitionState,
    Position,
    StateStore,
    Table,
    WindowTable,
    activate,
    hopping,
    tumbling,
)

SECOND = 1000


def emit(key: Any, window: Any, value: Any) -> dict[str, Any]:
    return {"key": key, "start": window.start.isoformat(), "value": value}


def open_state(path: Path, tables: list[Any]) -> PartitionState:
    return PartitionState(StateStore(path), tables, agent="acme.agent")


@pytest.fixture
def counts() -> Table:
    return Table("counts", default=0)


@pytest.fixture
def state(tmp_path: Path, counts: Table) -> Iterator[PartitionState]:
    state = open_state(tmp_path / "s", [counts, Table("lists", default=list)])
    token = activate(state)
    yield state
    CURRENT.reset(token)
    state.close()


def test_writes_are_pending_until_commit(tmp_path: Path, counts: Table,
                                         state: PartitionState) -> None:
    counts["a"] += 1
    counts["a"] += 1
    counts[("t", 1)] = 5
    assert counts["a"] == 2 and "a" in counts and "b" not in counts
    assert counts.get("b", "none") == "none" and counts["b"] == 0
    assert dict(state.changes()) == {b'\x06counts"a"': b"2", b'\x06counts["t",1]': b"5"}
    assert state.store.get(b'\x06counts"a"') is None
    state.commit(7, 3)
    assert state.position == Position(7, 3, None)
    assert state.changes() == []
    del counts["a"]
    assert dict(state.changes()) == {b'\x06counts"a"': None}
    state.commit(8, None)
    assert state.position == Position(8, 3, None)
    state.close()
    again = open_state(tmp_path / "s", [counts])
    token = activate(again)
    try:
        assert sorted(counts.items(), key=repr) == [(("t", 1), 5)]
        assert again.position == Position(8, 3, None)
    finally:
        CURRENT.reset(token)
        again.close()


def test_discard_forgets_the_batch(counts: Table, state: PartitionState) -> None:
    counts["a"] = 1
    state.commit(1, None)
    counts["a"] += 10
    counts["b"] = 3
    state.changes()  # drained for the changelog, then the batch failed
    state.discard()
    assert counts["a"] == 1 and "b" not in counts and state.changes() == []


def test_a_list_changed_in_place_is_stored(state: PartitionState) -> None:
    lists = state.tables[1]
    assert isinstance(lists, Table)
    lists["k"].append(1)
    state.commit(1, None)
    lists["k"].append(2)
    state.commit(2, None)
    assert dict(state.changes()) == {}
    assert state.store.get(b'\x05lists"k"') == b"[1,2]"


def test_an_undeclared_table_or_no_agent_is_a_config_error(counts: Table,
                                                           state: PartitionState) -> None:
    with pytest.raises(ConfigError, match=r"agent acme.agent did not declare table 'other'"):
        Table("other")["k"] = 1
    token = CURRENT.set(None)
    try:
        with pytest.raises(ConfigError, match="outside an agent"):
            counts["k"]
    finally:
        CURRENT.reset(token)


def test_closing_windows_emits_and_deletes(tmp_path: Path) -> None:
    revenue = WindowTable("revenue", window=tumbling(timedelta(seconds=10)),
                          grace=timedelta(seconds=5), default=0.0, to="out", emit=emit)
    state = open_state(tmp_path / "s", [revenue])
    token = activate(state)
    try:
        for t, key, amount in [(1, "red", 1.0), (9, "blue", 2.0), (11, "red", 4.0),
                               (3, "red", 8.0)]:  # @3: stream time 11 < 10 + 5: open
            state.set_record_time(t * SECOND)
            revenue.add(key, amount)
        assert state.close_windows() == []
        state.commit(4, None)
        state.set_record_time(15 * SECOND)  # closes [0, 10)
        revenue.add("blue", 1.0)
        closed = state.close_windows()
        assert closed == [("out", {"key": "blue", "start": "1970-01-01T00:00:00+00:00",
                                   "value": 2.0}),
                          ("out", {"key": "red", "start": "1970-01-01T00:00:00+00:00",
                                   "value": 9.0})]
        state.commit(5, None)
        assert [(k, w.start.second, v) for (k, w), v in revenue.items()] == [
            ("blue", 10, 1.0), ("red", 10, 4.0)]
        state.set_record_time(2 * SECOND)  # its window closed: dropped, counted once
        revenue.add("red", 100.0)
        revenue.add("blue", 100.0)
        assert state.late == 1 and state.close_windows() == []
        assert revenue.windows("red") == {revenue.window.window(10 * SECOND): 4.0}
    finally:
        CURRENT.reset(token)
        state.close()


def run(path: Path, batches: list[list[int]]) -> tuple[list[Any], list[Any], int]:
    """Feed record times in these batches (each committed) to a hopping window count."""
    table = WindowTable("n", window=hopping(timedelta(seconds=4), timedelta(seconds=2)),
                        grace=timedelta(seconds=1), default=0, to="out", emit=emit)
    state = open_state(path, [table])
    token = activate(state)
    sent: list[Any] = []
    offset = 0
    try:
        for batch in batches:
            for t in batch:
                state.set_record_time(t * SECOND)
                table.add("k", 1)
            sent += state.close_windows()
            offset += len(batch)
            state.commit(offset, None)
        state.advance(10**6)
        sent += state.close_windows()
        return sent, table.items(), state.late
    finally:
        CURRENT.reset(token)
        state.close()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=30),
       st.lists(st.integers(min_value=1, max_value=30), max_size=5))
def test_late_rule_does_not_depend_on_batch_boundaries(times: list[int],
                                                       cuts: list[int]) -> None:
    points = sorted({c % len(times) for c in cuts} - {0})
    batches = [times[a:b] for a, b in zip([0, *points], [*points, len(times)], strict=True)]
    with tempfile.TemporaryDirectory() as folder:
        one = run(Path(folder) / "one", [times])
        many = run(Path(folder) / "many", batches)
    assert one == many
