"""The merge rule: a total order per rule, checked against an independent oracle and DuckDB.

Versions whose ranks are equal may differ in the fields the rule ignores (the generated
value bytes do not encode the clock), so winners are compared by the oracle's sort key,
never by identity. ``first`` needs distinct log positions, so every offset is unique.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onepipe.schemas.errors import MergeError
from onepipe.schemas.merge import MergeRule, Version, dominates, rank_bytes
from onepipe.schemas.metadata import OrderRule

MAX = MergeRule(OrderRule("max", "version"))
FIRST = MergeRule(OrderRule("first"))
CLOCK = MergeRule(OrderRule("vector_clock", "clock"))
RULES = [pytest.param(MAX, id="max"), pytest.param(FIRST, id="first"),
         pytest.param(CLOCK, id="vector_clock")]
LONG = st.integers(-(2**63), 2**63 - 1)

# Few distinct bytes, so prefixes, duplicates and the signed/unsigned boundary are common.
values = st.lists(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]), max_size=3).map(bytes)
clocks = st.dictionaries(st.sampled_from(["a", "b", "c"]),
                         st.one_of(st.integers(0, 3), st.integers(0, 2**63 - 1)), max_size=3)


@st.composite
def row_lists(draw: st.DrawFn, max_size: int = 8) -> list[dict[str, Any]]:
    """Rows carrying every rule's order field; offsets are unique across the list."""
    n = draw(st.integers(1, max_size))
    offsets = draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n, unique=True))
    return [{"key": draw(st.integers(0, 2)), "partition": draw(st.integers(0, 3)),
             "offset": offset, "value": draw(values),
             "version": draw(st.one_of(st.integers(-2, 2), LONG)), "clock": draw(clocks)}
            for offset in offsets]


def to_version(rule: MergeRule, row: Mapping[str, Any]) -> Version:
    order_value = rule.order_value(row)
    return Version(row["value"], row["partition"], row["offset"], order_value)


# ------------------------------------------------------------------- the oracle


def oracle_dominates(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    nodes = set(a) | set(b)
    return (all(a.get(n, 0) >= b.get(n, 0) for n in nodes)
            and any(a.get(n, 0) > b.get(n, 0) for n in nodes))


def sort_key(rule: MergeRule, v: Version) -> tuple[Any, ...]:
    """What identifies a winner's content under the rule (the higher, the better)."""
    if rule.order.rule == "max":
        return (v.order_value, v.value)
    if rule.order.rule == "first":
        return (-v.partition, -v.offset)
    return (sum(v.order_value.values()), v.value)


def oracle_winner(rule: MergeRule, versions: Sequence[Version]) -> tuple[Any, ...]:
    if rule.order.rule == "max":
        return max((v.order_value, v.value) for v in versions)
    if rule.order.rule == "first":
        p, o = min((v.partition, v.offset) for v in versions)
        return (-p, -o)
    maximal = [v for v in versions
               if not any(oracle_dominates(u.order_value, v.order_value) for u in versions)]
    return max((sum(v.order_value.values()), v.value) for v in maximal)


# ------------------------------------------------------------- Python properties


@pytest.mark.parametrize("rule", RULES)
@given(rows=row_lists(), data=st.data())
def test_winner_is_the_oracle_whatever_the_order_and_duplicates(
        rule: MergeRule, rows: list[dict[str, Any]], data: st.DataObject) -> None:
    versions = [to_version(rule, r) for r in rows]
    extra = data.draw(st.lists(st.sampled_from(versions), max_size=6))
    shuffled = data.draw(st.permutations(versions + extra))
    expected = oracle_winner(rule, versions)
    assert sort_key(rule, rule.winner(versions)) == expected
    assert sort_key(rule, rule.winner(shuffled)) == expected


@pytest.mark.parametrize("rule", RULES)
@given(rows=row_lists(max_size=10), data=st.data())
def test_folding_batches_equals_merging_the_whole_set(
        rule: MergeRule, rows: list[dict[str, Any]], data: st.DataObject) -> None:
    versions = data.draw(st.permutations([to_version(rule, r) for r in rows]))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(versions)), max_size=4)))
    batches = [versions[i:j] for i, j in itertools.pairwise([0, *cuts, len(versions)])]
    current: list[Version] = []
    for batch in batches:
        if current or batch:
            current = [rule.winner(current + batch)]
    assert sort_key(rule, current[0]) == sort_key(rule, rule.winner(versions))


@given(a=clocks, b=clocks)
def test_dominates_matches_the_definition(a: dict[str, int], b: dict[str, int]) -> None:
    assert dominates(a, b) == oracle_dominates(a, b)
    assert not (dominates(a, b) and dominates(b, a))


@given(rows=row_lists(max_size=10))
def test_vector_clock_never_lets_a_dominated_version_win(rows: list[dict[str, Any]]) -> None:
    versions = [to_version(CLOCK, r) for r in rows]
    for a, b in itertools.permutations(versions, 2):
        if oracle_dominates(a.order_value, b.order_value):
            assert CLOCK.winner([a, b]) is a
            assert CLOCK.winner([b, a]) is a
    best = CLOCK.winner(versions)
    assert not any(oracle_dominates(v.order_value, best.order_value) for v in versions)


def test_the_docstring_cycle_has_one_winner() -> None:
    # a || b, b || c, c dominates a, bytes a > b > c: "dominates, else bytes" would cycle.
    a = Version(b"\x03", 0, 0, {"x": 1})
    b = Version(b"\x02", 0, 1, {"y": 1})
    c = Version(b"\x01", 0, 2, {"x": 2})
    assert oracle_dominates(c.order_value, a.order_value)
    for x, y in [(a, b), (b, c)]:
        assert not oracle_dominates(x.order_value, y.order_value)
        assert not oracle_dominates(y.order_value, x.order_value)
    for order in itertools.permutations([a, b, c]):
        assert CLOCK.winner(order) is c
        assert CLOCK.winner([CLOCK.winner(order[:2]), order[2]]) is c


# ------------------------------------------------------------ DuckDB equivalence

SQL_RULES = [RULES[0], RULES[1], pytest.param(CLOCK, id="vector_clock")]


def check_sql_matches_python(rule: MergeRule, rows: list[dict[str, Any]]) -> None:
    table = pa.table({
        "key": pa.array([r["key"] for r in rows], pa.int64()),
        "_kafka_partition": pa.array([r["partition"] for r in rows], pa.int32()),
        "_kafka_offset": pa.array([r["offset"] for r in rows], pa.int64()),
        "_kafka_value": pa.array([r["value"] for r in rows], pa.binary()),
        "version": pa.array([r["version"] for r in rows], pa.int64()),
        "clock": pa.array([list(r["clock"].items()) for r in rows],
                          pa.map_(pa.string(), pa.int64())),
    })
    con = duckdb.connect()
    try:
        con.register("t", table)
        chosen = con.execute(
            "SELECT key, _kafka_partition, _kafka_offset FROM t QUALIFY row_number() "
            f"OVER (PARTITION BY key ORDER BY {rule.sql_order()}) = 1").fetchall()
    finally:
        con.close()
    by_position = {(r["partition"], r["offset"]): r for r in rows}
    assert sorted(k for k, _, _ in chosen) == sorted({r["key"] for r in rows})
    for key, partition, offset in chosen:
        row = by_position[(partition, offset)]
        assert row["key"] == key
        versions = [to_version(rule, r) for r in rows if r["key"] == key]
        expected = sort_key(rule, rule.winner(versions))
        assert sort_key(rule, to_version(rule, row)) == expected, (key, rows)


@pytest.mark.parametrize("rule", SQL_RULES)
@settings(max_examples=50, deadline=None)
@given(rows=row_lists(max_size=12))
def test_sql_order_picks_the_python_winner(rule: MergeRule, rows: list[dict[str, Any]]) -> None:
    check_sql_matches_python(rule, rows)


def _rows(*specs: tuple[bytes, int, dict[str, int]]) -> list[dict[str, Any]]:
    return [{"key": 0, "partition": i % 2, "offset": 100 - i, "value": value,
             "version": version, "clock": clock}
            for i, (value, version, clock) in enumerate(specs)]


EDGE_CASES = {
    "prefix": _rows((b"ab", 1, {}), (b"a", 1, {}), (b"", 1, {}), (b"a\x00", 1, {})),
    "0x80_vs_0x7f": _rows((b"\x7f", 5, {"a": 1}), (b"\x80", 5, {"a": 1})),
    "0x00_vs_0xff": _rows((b"\x00\xff", 0, {}), (b"\xff", 0, {}), (b"\x00", 0, {})),
    "equal_versions_other_bytes": _rows((b"z", 2**63 - 1, {}), (b"y", 2**63 - 1, {})),
    "negative_versions": _rows((b"\xff", -(2**63), {}), (b"\x00", -1, {})),
    "totals_past_2**63": _rows((b"\xff", 0, {"a": 2**63 - 1}),
                               (b"\x00", 0, {"a": 2**62, "b": 2**62})),
    "totals_beyond_double": _rows((b"\xff", 0, {"a": 2**63 - 1, "b": 2**63 - 2}),
                                  (b"\x00", 0, {"a": 2**63 - 1, "b": 2**63 - 1})),
    "empty_clocks": _rows((b"\x01", 0, {}), (b"\x02", 0, {"a": 0}), (b"", 0, {})),
    "empty_vs_counter": _rows((b"\xff", 0, {}), (b"\x00", 0, {"c": 1})),
}


@pytest.mark.parametrize("rule", SQL_RULES)
@pytest.mark.parametrize("rows", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_sql_order_edge_cases(rule: MergeRule, rows: list[dict[str, Any]]) -> None:
    check_sql_matches_python(rule, rows)


def test_edge_case_winners_are_the_documented_ones() -> None:
    def best(rule: MergeRule, case: str) -> Version:
        return rule.winner(to_version(rule, r) for r in EDGE_CASES[case])
    assert best(MAX, "prefix").value == b"ab"
    assert best(MAX, "0x80_vs_0x7f").value == b"\x80"
    assert best(MAX, "equal_versions_other_bytes").value == b"z"
    assert best(MAX, "negative_versions").value == b"\x00"
    assert best(FIRST, "prefix").value == b""  # lowest (partition, offset)
    assert best(CLOCK, "totals_past_2**63").value == b"\x00"
    assert best(CLOCK, "totals_beyond_double").value == b"\x00"
    assert best(CLOCK, "empty_clocks").value == b"\x02"
    assert best(CLOCK, "empty_vs_counter").value == b"\x00"


# ------------------------------------------------------------------------ errors


@pytest.mark.parametrize("bad", ["3", 3.0, None, True, {"a": 1}])
def test_max_rejects_a_non_int_version(bad: object) -> None:
    with pytest.raises(MergeError, match="'version'.*int"):
        MAX.rank(bad, b"", 0, 0)


@pytest.mark.parametrize("bad", [None, 3, [("a", 1)], "a=1"])
def test_vector_clock_rejects_a_non_map_clock(bad: object) -> None:
    with pytest.raises(MergeError, match="'clock'.*map"):
        CLOCK.rank(bad, b"", 0, 0)


@pytest.mark.parametrize("rule", [MAX, CLOCK], ids=["max", "vector_clock"])
def test_order_value_of_a_record_without_the_field(rule: MergeRule) -> None:
    with pytest.raises(MergeError, match=repr(rule.order.field)):
        rule.order_value({"other": 1})
    assert FIRST.order_value({}) is None


@pytest.mark.parametrize("rule", RULES)
def test_winner_of_nothing_is_an_error(rule: MergeRule) -> None:
    with pytest.raises(MergeError, match="no versions"):
        rule.winner([])
    with pytest.raises(MergeError):
        rule.winner(iter(()))


ranks = st.one_of(
    st.tuples(st.integers(-(2**126), 2**126), st.binary(max_size=12)),
    st.tuples(st.integers(-(2**126), 2**126), st.integers(-(2**126), 2**126)),
)


@given(a=ranks, b=ranks)
def test_rank_bytes_order_like_ranks(a: tuple[Any, Any], b: tuple[Any, Any]) -> None:
    if type(a[1]) is not type(b[1]):
        return  # one rule's ranks are never compared with another's
    assert (rank_bytes(a) > rank_bytes(b)) == (a > b)
    assert (rank_bytes(a) == rank_bytes(b)) == (a == b)


def test_rank_bytes_edges() -> None:
    assert rank_bytes((1, b"")) < rank_bytes((1, b"\x00")) < rank_bytes((2, b""))
    assert rank_bytes((-1, -1)) > rank_bytes((-1, -2)) > rank_bytes((-2, 0))
    assert rank_bytes((2**64, b"a")) > rank_bytes((2**63, b"z"))  # clock totals past int64
