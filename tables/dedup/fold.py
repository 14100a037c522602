"""Fold a batch of versions into the dedup table: which versions win, which are dropped.

Pure: no I/O. The rank of every version comes from :class:`~onepipe.schemas.merge.MergeRule`;
this module only walks a batch in order, keeping per key the highest rank seen so far,
starting from the table's stored winner. Classification is per version, against the
best rank of its key *before* it (stored winner or an earlier version of the batch):

- higher: it is the key's new best; the batch's last best per key is emitted;
- equal: a duplicate (re-delivery, a producer retry, the same record re-sent);
- lower: a loser (an out-of-order older version).

Walking in order from the stored winner makes the duplicate and loser counts independent
of how the stream was cut into batches.

The ``onepipe.source`` header carries a version's position in the *source* topic through
the repartition topic and into ``<topic>.unique`` (rule ``first`` ranks by it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import is_not, neg
from typing import Any

from onepipe.schemas.errors import CodecError
from onepipe.schemas.merge import MergeRule, Rank
from onepipe.tables.dedup.store import Entry, Winner

__all__ = ["SOURCE_HEADER", "FoldResult", "fold", "format_source", "parse_source",
           "rank_batch", "source_of"]

#: Header holding ``b"<source partition>:<source offset>"``.
SOURCE_HEADER = "onepipe.source"


def format_source(partition: int, offset: int) -> bytes:
    return b"%d:%d" % (partition, offset)


def parse_source(value: bytes) -> tuple[int, int]:
    """``b"3:1200"`` -> ``(3, 1200)``; :class:`CodecError` for anything else."""
    partition, sep, offset = value.partition(b":")
    try:
        return int(partition), int(offset if sep else b"")
    except ValueError:
        raise CodecError(f"header {SOURCE_HEADER} must be b'<partition>:<offset>', "
                         f"got {value!r}") from None


def source_of(headers: Sequence[tuple[str, bytes]]) -> tuple[int, int] | None:
    """The last ``onepipe.source`` position in ``headers``, if any."""
    for name, value in reversed(headers):
        if name == SOURCE_HEADER:
            return parse_source(value)
    return None


def rank_batch(rule: MergeRule, orders: Sequence[Any], values: Sequence[bytes],
               partition: int, offsets: Sequence[int]) -> list[Rank]:
    """``[rule.rank(o, v, partition, off) for ...]``, index-aligned; the same ranks.

    ``MergeRule.rank`` is a Python call per version (~0.25 µs); for rule ``max`` over
    ``int`` order values and for rule ``first`` its tuples are built column-wise here
    (equality with ``rule.rank`` is tested). Anything else -- vector clocks, an order
    value that is not an ``int`` -- goes through ``rule.rank``, which raises
    :class:`~onepipe.schemas.errors.MergeError` for the first version it refuses.
    """
    kind = rule.order.rule
    if kind == "max" and orders and set(map(type, orders)) == {int}:
        return list(zip(orders, values, strict=True))  # (order value, value bytes)
    if kind == "first":
        return list(zip(repeat(-partition), map(neg, offsets)))  # (-partition, -offset)
    return list(map(rule.rank, orders, values, repeat(partition), offsets))


@dataclass(slots=True)
class FoldResult:
    """What one batch does to the table."""

    #: Key -> index in the batch of its new winner, for keys whose winner changed.
    chosen: dict[bytes, int] = field(default_factory=dict)
    #: Key -> the stored winner (None for a new key), for every key of the batch.
    current: dict[bytes, Winner | Entry | None] = field(default_factory=dict)
    duplicates: int = 0
    losers: int = 0
    #: Versions that were the best of their key for a while but lost within the batch
    #: (never emitted: only the batch's last best per key is).
    superseded: int = 0


def fold(rule: MergeRule, keys: Sequence[bytes], ranks: Sequence[Rank],
         current: dict[bytes, Winner | Entry | None]) -> FoldResult:
    """Fold versions ``i`` (``keys[i]``, ``ranks[i]``) in order into ``current``.

    ``current`` holds the stored winner of every key in ``keys`` (None if none), and
    no other key.
    """
    if len(current) == len(keys):  # then every key occurs once
        return _fold_distinct(rule, keys, ranks, current)
    result = FoldResult(current=current)
    best: dict[bytes, Rank | None] = {k: (w[0] if w is not None else None)
                                      for k, w in current.items()}
    chosen = result.chosen
    wins = rule.wins
    duplicates = losers = superseded = 0
    for i, key in enumerate(keys):
        rank = ranks[i]
        held = best[key]
        if wins(rank, held):
            best[key] = rank
            if key in chosen:
                superseded += 1
            chosen[key] = i
        elif rank == held:
            duplicates += 1
        else:
            losers += 1
    result.duplicates, result.losers, result.superseded = duplicates, losers, superseded
    return result


def _fold_distinct(rule: MergeRule, keys: Sequence[bytes], ranks: Sequence[Rank],
                   current: dict[bytes, Winner | Entry | None]) -> FoldResult:
    """:func:`fold` of a batch where every key occurs once (the common case: a re-sent
    version rarely shares a fetch with its original), with the same result.

    A new key's version always wins, so only versions of keys with a stored winner are
    compared (one Python step each); the rest is C-level, in batch order.
    """
    result = FoldResult(current=current)
    chosen = result.chosen = dict(zip(keys, range(len(keys)), strict=True))
    held = list(map(current.__getitem__, keys))
    wins = rule.wins
    for i in compress(range(len(keys)), map(is_not, held, repeat(None))):
        rank, stored = ranks[i], held[i][0]  # type: ignore[index]  # compress: not None
        if wins(rank, stored):
            continue
        del chosen[keys[i]]
        if rank == stored:
            result.duplicates += 1
        else:
            result.losers += 1
    return result
