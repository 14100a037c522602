"""Folding versions into the table: counts per version, the best per key, headers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onepipe.schemas.errors import CodecError, MergeError
from onepipe.schemas.merge import MergeRule
from onepipe.schemas.metadata import OrderRule
from onepipe.tables.dedup.fold import fold, format_source, parse_source, rank_batch, source_of
from onepipe.tables.dedup.store import Entry, Winner

RULE = MergeRule(OrderRule("max", "version"))


def test_counts_are_per_version_against_the_best_before_it() -> None:
    stored = Winner(RULE.rank(5, b"v5", 0, 0), b"v5", 0, 0)
    keys = [b"a", b"a", b"a", b"b", b"b"]
    versions = [(5, b"v5"), (4, b"v4"), (7, b"v7"), (1, b"w1"), (2, b"w2")]
    ranks = [RULE.rank(n, v, 0, i) for i, (n, v) in enumerate(versions)]
    result = fold(RULE, keys, ranks, {b"a": stored, b"b": None})
    assert result.chosen == {b"a": 2, b"b": 4}
    assert (result.duplicates, result.losers, result.superseded) == (1, 1, 1)


@given(st.lists(st.tuples(st.sampled_from([b"a", b"b", b"c"]), st.integers(0, 5)),
                max_size=40), st.integers(1, 10))
def test_batching_does_not_change_the_outcome(items: list[tuple[bytes, int]], cut: int
                                              ) -> None:
    """One batch or two: same winners, same duplicate and loser counts."""
    ranks = [RULE.rank(n, b"%d" % n, 0, i) for i, (_, n) in enumerate(items)]
    keys = [k for k, _ in items]

    def run(batches: list[range]) -> tuple[dict[bytes, object], int, int]:
        table: dict[bytes, Winner | None] = {}
        dups = losers = 0
        for batch in batches:
            bkeys = [keys[i] for i in batch]
            current: dict[bytes, Winner | Entry | None] = {k: table.get(k) for k in bkeys}
            result = fold(RULE, bkeys, [ranks[i] for i in batch], current)
            dups, losers = dups + result.duplicates, losers + result.losers
            for key, j in result.chosen.items():
                i = batch[j]
                table[key] = Winner(ranks[i], b"%d" % items[i][1], 0, i)
        return {k: w.rank for k, w in table.items() if w}, dups, losers

    split = min(cut, len(items))
    assert run([range(len(items))]) == run([range(split), range(split, len(items))])


@given(st.lists(st.tuples(st.integers(0, 5), st.one_of(st.none(), st.integers(0, 5))),
                max_size=40))
def test_a_batch_of_distinct_keys_folds_as_version_by_version(
        items: list[tuple[int, int | None]]) -> None:
    """The distinct-keys path (one comparison per stored winner) gives the counts and the
    chosen indices, in batch order, of the version-by-version walk."""
    keys = [b"k%d" % i for i in range(len(items))]
    ranks = [RULE.rank(n, b"%d" % n, 0, i) for i, (n, _) in enumerate(items)]
    current: dict[bytes, Winner | Entry | None] = {
        k: None if s is None else Winner(RULE.rank(s, b"%d" % s, 0, 0), b"%d" % s, 0, 0)
        for k, (_, s) in zip(keys, items, strict=True)}
    chosen, dups, losers = {}, 0, 0
    for i, key in enumerate(keys):
        held = current[key]
        if RULE.wins(ranks[i], held[0] if held is not None else None):
            chosen[key] = i
        elif held is not None and ranks[i] == held[0]:
            dups += 1
        else:
            losers += 1
    result = fold(RULE, keys, ranks, current)
    assert list(result.chosen.items()) == list(chosen.items())
    assert (result.duplicates, result.losers, result.superseded) == (dups, losers, 0)


@given(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 5)), max_size=60),
       st.lists(st.tuples(st.integers(0, 8), st.integers(0, 5)), max_size=8))
def test_a_batch_with_repeated_keys_folds_as_version_by_version(
        items: list[tuple[int, int]], stored: list[tuple[int, int]]) -> None:
    """Only repeated keys and keys with a stored winner are walked: the counts and the
    chosen indices, in the order of each key's first win, are the full walk's."""
    keys = [b"k%d" % k for k, _ in items]
    ranks = [RULE.rank(n, b"%d" % n, 0, i) for i, (_, n) in enumerate(items)]
    winners = {b"k%d" % k: Winner(RULE.rank(n, b"%d" % n, 0, 0), b"%d" % n, 0, 0)
               for k, n in stored}
    current: dict[bytes, Winner | Entry | None] = {k: winners.get(k) for k in keys}
    best = {k: (w[0] if w is not None else None) for k, w in current.items()}
    chosen: dict[bytes, int] = {}
    dups = losers = superseded = 0
    for i, key in enumerate(keys):
        if RULE.wins(ranks[i], best[key]):
            best[key] = ranks[i]
            superseded += key in chosen
            chosen[key] = i
        elif ranks[i] == best[key]:
            dups += 1
        else:
            losers += 1
    result = fold(RULE, keys, ranks, current)
    assert list(result.chosen.items()) == list(chosen.items())
    assert (result.duplicates, result.losers, result.superseded) == (dups, losers, superseded)


def test_source_header_round_trip_and_errors() -> None:
    assert parse_source(format_source(3, 1200)) == (3, 1200)
    assert source_of([("x", b"1"), ("onepipe.source", b"1:2"), ("onepipe.source", b"4:5")]
                     ) == (4, 5)
    assert source_of([]) is None
    with pytest.raises(CodecError, match="onepipe.source"):
        parse_source(b"12")


RULES = [RULE, MergeRule(OrderRule("first")), MergeRule(OrderRule("vector_clock", "clock"))]
orders = st.one_of(st.integers(-(2**70), 2**70), st.booleans(), st.none(), st.floats(),
                   st.dictionaries(st.sampled_from("abc"), st.integers(0, 9)))


@given(st.sampled_from(RULES), st.lists(st.tuples(orders, st.binary(max_size=4),
                                                  st.integers(0, 2**40)), max_size=20),
       st.integers(0, 50))
def test_rank_batch_equals_the_rules_rank(rule: MergeRule,
                                          versions: list[tuple[object, bytes, int]],
                                          partition: int) -> None:
    """Column-wise ranks: the same tuples as ``MergeRule.rank``, or its MergeError."""
    order_values = [o for o, _, _ in versions]
    values = [v for _, v, _ in versions]
    offsets = [off for _, _, off in versions]
    try:
        expected = [rule.rank(o, v, partition, off) for o, v, off in versions]
    except MergeError:
        with pytest.raises(MergeError):
            rank_batch(rule, order_values, values, partition, offsets)
        return
    assert rank_batch(rule, order_values, values, partition, offsets) == expected
