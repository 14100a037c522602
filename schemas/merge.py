"""The merge rule: which of two versions of one unique key wins. Written once, used by all.

The dedup agent, the compactor and the online sinks each keep only the current winner of
a key and fold new versions into it as they come, in whatever order each of them sees
them. They agree only if the rule is a *total order* on versions: the winner of a set is
then its maximum, which does not depend on arrival order, on duplicates, or on how the
set was split into batches (``winner(S | T) == winner({winner(S)} | T)``). Every rule
below is therefore a *rank* -- a tuple compared lexicographically -- and the version with
the highest rank wins; equal ranks mean equal content, so either may be kept.

The rules (never wall-clock time: producer clocks skew, and the Kafka timestamp is set by
whichever client or broker wrote the record):

``max``
    Rank ``(version, value)``: the highest version field wins. Two different records with
    the same version (a producer bug) are ordered by their encoded value bytes.
``first``
    Rank ``(-partition, -offset)``: the record earliest in the log wins. All versions of a
    key share a partition when the key is encoded canonically; for records a producer
    keyed differently, the lower source partition comes first, which every system that
    reads the same log computes alike.
``vector_clock``
    Rank ``(total, value)`` where ``total`` is the sum of the clock's counters (a missing
    entry counts 0). A clock that *dominates* another (every counter ``>=``, one ``>``)
    has a strictly larger total, so the dominating version always wins. Concurrent
    versions are ordered by total, then by encoded value bytes. Why not the bytes alone
    for concurrent clocks: "dominates, else compare bytes" is not transitive (``a || b``,
    ``b || c``, ``c`` dominates ``a``, bytes ``a > b > c`` gives a cycle), so a system
    holding only its current winner would pick a different winner depending on arrival
    order. Ranking by total is a linear extension of dominance, so it is a total order.

The tie-break compares the value bytes exactly as they are on the broker (Confluent
frame: schema id, then Avro body). Those bytes never change -- unlike a re-encoding
under a later schema version -- and every system keeps them: the stream has them, and
both lakes store them in ``_kafka_value``. Python's ``bytes`` order and DuckDB's ``BLOB``
order are both unsigned lexicographic with a shorter prefix first, so
:meth:`MergeRule.sql_order` ranks exactly like :meth:`MergeRule.rank`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from onepipe.schemas.errors import MergeError
from onepipe.schemas.metadata import OrderRule

__all__ = ["MergeRule", "Rank", "Version", "dominates", "rank_bytes"]

#: A version's position in the rule's total order; the higher rank wins.
Rank = tuple[int, bytes] | tuple[int, int]

#: Names of the raw/clean lake columns that hold a record's log position and value bytes.
PARTITION_COLUMN = "_kafka_partition"
OFFSET_COLUMN = "_kafka_offset"
VALUE_COLUMN = "_kafka_value"


@dataclass(frozen=True, slots=True)
class Version:
    """One version of a record: what every system knows about it."""

    #: The value bytes as on the broker (Confluent-framed).
    value: bytes
    #: The Kafka partition it was first written to.
    partition: int
    #: Its offset in that partition.
    offset: int
    #: The order field's value: an ``int`` for ``max``, a ``dict[str, int]`` clock for
    #: ``vector_clock``, ignored for ``first``.
    order_value: Any = None


def dominates(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """Whether clock ``a`` dominates ``b``: no counter lower, at least one higher (missing = 0)."""
    greater = False
    for node in a.keys() | b.keys():
        x, y = a.get(node, 0), b.get(node, 0)
        if x < y:
            return False
        greater = greater or x > y
    return greater


@dataclass(frozen=True, slots=True)
class MergeRule:
    """A topic's order rule as a rank function (Python) and an ``ORDER BY`` (DuckDB)."""

    order: OrderRule

    @property
    def field(self) -> str | None:
        """The record field the rule reads, if any."""
        return self.order.field if self.order.rule != "first" else None

    def rank(self, order_value: Any, value: bytes, partition: int, offset: int) -> Rank:
        """The rank of one version; compare ranks with ``>`` to find the winner."""
        rule = self.order.rule
        if rule == "first":
            return (-partition, -offset)
        if rule == "max":
            if type(order_value) is not int:
                raise MergeError(
                    f"order field {self.order.field!r} must be an int for rule max, "
                    f"got {type(order_value).__name__}")
            return (order_value, value)
        if not isinstance(order_value, Mapping):
            raise MergeError(
                f"order field {self.order.field!r} must be a map of counters for rule "
                f"vector_clock, got {type(order_value).__name__}")
        return (clock_total(order_value), value)

    def rank_of(self, version: Version) -> Rank:
        return self.rank(version.order_value, version.value, version.partition, version.offset)

    def order_value(self, record: Mapping[str, Any]) -> Any:
        """The order field's value in a decoded record (``None`` for ``first``)."""
        name = self.field
        if name is None:
            return None
        try:
            return record[name]
        except KeyError:
            raise MergeError(f"record has no order field {name!r}") from None

    def wins(self, new: Rank, current: Rank | None) -> bool:
        """Whether a version ranked ``new`` replaces the current winner ranked ``current``.

        Equal ranks do not replace: for ``max`` and ``vector_clock`` they mean identical
        bytes, for ``first`` the same log position -- a duplicate either way.
        """
        return current is None or new > current

    def winner(self, versions: Iterable[Version]) -> Version:
        """The winning version of a non-empty set (the maximum rank)."""
        best: Version | None = None
        best_rank: Rank | None = None
        for version in versions:
            rank = self.rank_of(version)
            if self.wins(rank, best_rank):
                best, best_rank = version, rank
        if best is None:
            raise MergeError("no versions to merge")
        return best

    def sql_order(self) -> str:
        """A DuckDB ``ORDER BY`` list that sorts a key's versions winner first.

        For the raw and clean lake layout (``_kafka_partition``, ``_kafka_offset``,
        ``_kafka_value`` and a typed column named like the order field). Versions with
        equal rank (identical bytes) are ordered by log position, so even the
        provenance columns of the row a SQL merge keeps are deterministic.
        """
        position = f"{_quote(PARTITION_COLUMN)} ASC, {_quote(OFFSET_COLUMN)} ASC"
        rule = self.order.rule
        if rule == "first":
            return position
        assert self.order.field is not None  # metadata validation guarantees it
        column = _quote(self.order.field)
        if rule == "max":
            primary = f"{column} DESC"
        else:
            # HUGEINT: the total of int64 counters can pass 2**63 (no lambda: its
            # syntax changed between DuckDB releases).
            primary = f"coalesce(list_sum(map_values({column})::HUGEINT[]), 0) DESC"
        return f"{primary}, {_quote(VALUE_COLUMN)} DESC, {position}"


def rank_bytes(rank: Rank) -> bytes:
    """The rank as bytes whose unsigned lexicographic order is the rank's order.

    For stores that compare ranks themselves (an online sink's upsert keeps a row unless
    the new version's rank bytes are greater: PostgreSQL ``bytea``, MySQL ``VARBINARY``
    and SQLite ``BLOB`` all compare bytes unsigned and lexicographically, a shorter prefix
    first, as Python does). Each integer is a fixed 16-byte offset binary (clock totals can
    pass 2**63); the value bytes of ``max`` and ``vector_clock`` follow as they are.
    """
    head, tail = rank
    if isinstance(tail, bytes):
        return _int16(head) + tail
    return _int16(head) + _int16(tail)


def _int16(n: int) -> bytes:
    return (n + 2**127).to_bytes(16, "big")


def clock_total(clock: Mapping[str, int]) -> int:
    """The sum of a vector clock's counters: a linear extension of dominance."""
    return sum(clock.values())


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
