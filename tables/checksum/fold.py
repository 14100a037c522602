"""The checksum table's rule, pure: how winners and raw records change per-day figures.

Contract:

- :func:`contributions` turns decoded winners into what each adds to its day and hour
  (:class:`Contribution`: day, hour, row hash, exact sum values - what it takes to remove
  it again), column-wise.
- :func:`fold` folds new winners, in ``.unique`` order, into day and hour figures: a key's
  previous contribution leaves its old day, the new one joins its day. Figures add up
  exactly (the row hash of onepipe.schemas.checksum, the exact sums of
  onepipe.schemas.exact_sum, one key per winner), so a table equals
  ``onepipe.schemas.figures.figures`` over the winners grouped by day. A key folded twice
  in one batch chains (only the last counts). A winner that did not decode, or has no
  day, removes its key's previous contribution and adds none (as
  onepipe.agents.verify.stream leaves such winners out).
- Retention: days before a cutoff are dropped (:func:`fold` reports them), and
  contributions of dropped days are neither removed nor added later, so a dropped day
  never comes back with partial figures.
- :func:`count_raw` is the raw record count's rule: every source record (duplicates and
  losers included) counted in its day as a :class:`RawCount`.

No I/O: onepipe.tables.checksum.store writes what these functions return.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from onepipe.schemas.checksum import select_columns
from onepipe.schemas.checksum_spec import ChecksumSpec
from onepipe.schemas.errors import OnepipeError
from onepipe.schemas.exact_sum import ExactSum, zero_sum
from onepipe.schemas.figures import DayFigures

__all__ = ["Contribution", "FoldResult", "RawCount", "SumValue", "contributions", "count_raw",
           "fold"]

_MASK = 2**64 - 1
#: A float64 is an integer multiple of 2**-1074 (as onepipe.schemas.exact_sum keeps float sums).
_FLOAT_UNIT = 2**1074


SumValue = int | str | None
"""One row's value of one sum field: exact units (an int: the int, the unscaled decimal,
the float times 2**1074), ``"inf"``/``"-inf"``/``"nan"`` for special floats, None for null."""


class Contribution(NamedTuple):
    """What one winner adds to its day (a NamedTuple: one is built per winner)."""

    #: Day number (days since 1970-01-01).
    day: int
    #: Its row hash (onepipe.schemas.checksum.row_hashes).
    row_hash: int
    #: One value per spec sum field.
    sums: tuple[SumValue, ...]
    #: Hour number (hours since 1970-01-01T00; ``hour // 24 == day``).
    hour: int = 0


def _float_value(x: float) -> SumValue:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    numerator, denominator = x.as_integer_ratio()  # denominator: a power of 2 <= 2**1074
    return numerator * (_FLOAT_UNIT // denominator)


def _decimal_value(d: Decimal, scale: int) -> int:
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)  # a decimal column holds no NaN/inf
    unscaled = int("".join(map(str, digits)) or "0")
    shift = exponent + scale  # value = unscaled * 10**exponent = units * 10**-scale
    units = unscaled * 10**shift if shift >= 0 else unscaled // 10**-shift
    return -units if sign else units


def _sum_values(column: pa.Array, t: pa.DataType) -> list[SumValue]:
    """Each row's exact value of one sum column (canonical type ``t``), as exact_sum sums."""
    if pa.types.is_floating(t):
        return [None if x is None else _float_value(x) for x in column.to_pylist()]
    if pa.types.is_decimal(t):
        scale = t.scale
        return [None if d is None else _decimal_value(d, scale) for d in column.to_pylist()]
    values: list[SumValue] = column.cast(pa.int64()).to_pylist()
    return values


def contributions(table: pa.Table, spec: ChecksumSpec, row_hashes: Sequence[int],
                  days: Sequence[int | None], hours: Sequence[int | None] | None = None
                  ) -> list[Contribution | None]:
    """Each row's contribution (None when it has no day); column-wise but for the zip.

    ``hours`` (partition_hours of the same column) default to hour 00 of each day.
    """
    if hours is None:
        hours = [None if d is None else d * 24 for d in days]
    columns: list[list[SumValue]] = [[] for _ in spec.sum_fields]
    if spec.sum_fields:
        for batch in select_columns(table, spec, spec.sum_fields):
            for i, name in enumerate(spec.sum_fields):
                columns[i].extend(_sum_values(batch.column(i), spec.schema.field(name).type))
    per_row = zip(*columns, strict=True) if columns else (() for _ in days)
    return [None if day is None or hour is None else Contribution(day, h, tuple(s), hour)
            for day, hour, h, s in zip(days, hours, row_hashes, per_row, strict=True)]


@dataclass(slots=True)
class _Delta:
    """Signed change of one day's figures, in plain ints until the end of a batch."""

    rows: int = 0
    keys: int = 0
    checksum: int = 0
    units: list[int] = field(default_factory=list)
    pos_inf: list[int] = field(default_factory=list)
    neg_inf: list[int] = field(default_factory=list)
    nan: list[int] = field(default_factory=list)

    def add(self, c: Contribution, sign: int, spec: ChecksumSpec) -> None:
        if not self.units:
            n = len(spec.sum_fields)
            self.units, self.pos_inf, self.neg_inf, self.nan = [0] * n, [0] * n, [0] * n, [0] * n
        self.rows += sign
        if spec.count_distinct:
            self.keys += sign
        if spec.row_checksum:
            self.checksum += sign * c.row_hash
        for i, s in enumerate(c.sums):
            if s is None:
                continue
            if s == "nan":
                self.nan[i] += sign
            elif s == "inf":
                self.pos_inf[i] += sign
            elif s == "-inf":
                self.neg_inf[i] += sign
            else:
                assert isinstance(s, int)
                self.units[i] += sign * s

    def figures(self, spec: ChecksumSpec) -> DayFigures:
        sums: dict[str, ExactSum] = {}
        for i, name in enumerate(spec.sum_fields):
            zero = zero_sum(spec.schema.field(name).type)
            sums[name] = (ExactSum(zero.kind, self.units[i], zero.scale, self.pos_inf[i],
                                   self.neg_inf[i], self.nan[i]) if self.units else zero)
        return DayFigures(self.rows, self.keys, self.checksum & _MASK, sums)


@dataclass(frozen=True, slots=True)
class FoldResult:
    """What one batch changes in a table (written by :meth:`ChecksumStore.apply`)."""

    #: Key -> its new contribution, or None to delete the key.
    entries: dict[bytes, Contribution | None]
    #: Day -> its new figures (days with no row left are in :attr:`dropped` instead).
    days: dict[int, DayFigures]
    #: Days to delete: no row left, or older than the retention cutoff.
    dropped: frozenset[int]
    #: Hour -> its new figures (as :attr:`days`, one window finer).
    hours: dict[int, DayFigures] = field(default_factory=dict)
    #: Hours to delete (as :attr:`dropped`).
    dropped_hours: frozenset[int] = frozenset()


def fold(spec: ChecksumSpec, current_days: dict[int, DayFigures],
         previous: dict[bytes, Contribution | None],
         winners: Iterable[tuple[bytes, Contribution | None]], cutoff: int,
         current_hours: dict[int, DayFigures] | None = None) -> FoldResult:
    """Fold new winners (in ``.unique`` order) into the day and hour figures.

    ``previous`` holds the stored contribution of every key among ``winners`` (None: no
    contribution). Days below ``cutoff`` (and their hours) are dropped and never touched
    again.
    """
    held = dict(previous)
    deltas: dict[int, _Delta] = {}
    hour_deltas: dict[int, _Delta] = {}
    for key, new in winners:
        old = held.get(key)
        if old is not None and old.day >= cutoff:
            deltas.setdefault(old.day, _Delta()).add(old, -1, spec)
            hour_deltas.setdefault(old.hour, _Delta()).add(old, -1, spec)
        if new is not None and new.day >= cutoff:
            deltas.setdefault(new.day, _Delta()).add(new, 1, spec)
            hour_deltas.setdefault(new.hour, _Delta()).add(new, 1, spec)
        held[key] = new
    entries = {k: v for k, v in held.items() if k not in previous or previous[k] is not v}
    days, dropped = _totals(spec, current_days, deltas, cutoff)
    hours, dropped_hours = _totals(spec, current_hours or {}, hour_deltas, cutoff * 24)
    return FoldResult(entries, days, dropped, hours, dropped_hours)


def _totals(spec: ChecksumSpec, current: dict[int, DayFigures], deltas: dict[int, _Delta],
            cutoff: int) -> tuple[dict[int, DayFigures], frozenset[int]]:
    """Windows changed by ``deltas`` and windows to delete (emptied or below ``cutoff``)."""
    out: dict[int, DayFigures] = {}
    dropped = {w for w in current if w < cutoff}
    for window, delta in deltas.items():
        total = current.get(window, DayFigures.zero(spec)) + delta.figures(spec)
        if total.rows == 0:
            dropped.add(window)
        else:
            out[window] = total
    return out, frozenset(w for w in dropped if w in current or w in deltas)


class RawCount(NamedTuple):
    """Raw records of one day (every source record placed there)."""

    #: Records (undecodable ones included).
    records: int = 0
    #: Of them, values that did not decode (placed by their Kafka timestamp).
    undecodable: int = 0

    def plus(self, other: RawCount) -> RawCount:
        return RawCount(self.records + other.records, self.undecodable + other.undecodable)

    def to_json(self) -> dict[str, int]:
        return {"records": self.records, "undecodable": self.undecodable}


def count_raw(current: dict[int, RawCount], days: pa.Array | Sequence[int],
              undecodable: pa.Array | Sequence[bool], cutoff: int
              ) -> tuple[dict[int, RawCount], frozenset[int]]:
    """Counts of the days a batch adds to (``days[i]``, ``undecodable[i]``: record i's
    day and whether its value did not decode), and the days to delete (below
    ``cutoff``: never counted again).

    Column-wise (two ``value_counts`` a batch, not a Python step per record): the loop it
    replaced cost ~0.15 µs a record, the checksum agent's largest cost after its consumer.
    """
    gone = frozenset(d for d in current if d < cutoff)
    day_col = days if isinstance(days, pa.Array) else pa.array(days, pa.int32())
    bad_col = (undecodable if isinstance(undecodable, pa.Array)
               else pa.array(undecodable, pa.bool_()))
    if len(day_col) != len(bad_col):
        raise OnepipeError(f"count_raw: {len(day_col)} days but {len(bad_col)} undecodable "
                           "flags; pass one of each per record")
    if not len(day_col):
        return {}, gone
    kept = pc.greater_equal(day_col, cutoff)
    if kept.false_count:
        day_col, bad_col = day_col.filter(kept), bad_col.filter(kept)
    records = _tally(day_col)
    bad = _tally(day_col.filter(bad_col)) if bad_col.true_count else {}
    changed = {day: current.get(day, RawCount()).plus(RawCount(n, bad.get(day, 0)))
               for day, n in records.items()}
    return changed, gone


def _tally(days: pa.Array) -> dict[int, int]:
    """Records per day."""
    counts = pc.value_counts(days)
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(),
                    strict=True))
