"""One day's figures of one topic in one system -- what ``onepipe verify`` compares.

Rows, distinct keys, the row checksum (:mod:`onepipe.schemas.checksum`) and the exact sums
(:mod:`onepipe.schemas.exact_sum`) of the catalog's ``sum`` fields, computed over Arrow data by
the same functions in every system: the streaming checksum table, the clean lake and
each online sink. :class:`DayFigures` holds them with ``+``/``-`` and a JSON form that
carries :data:`~onepipe.schemas.checksum.CHECKSUM_VERSION` (figures of another version are not
comparable).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from onepipe.schemas.checksum import CHECKSUM_VERSION, checksum, select_columns
from onepipe.schemas.checksum_spec import ChecksumSpec
from onepipe.schemas.errors import SchemaError
from onepipe.schemas.exact_sum import ExactSum, sum_array, zero_sum

__all__ = ["DayFigures", "distinct_keys", "figures", "sums"]

_MASK = 2**64 - 1


def sums(data: pa.RecordBatch | pa.Table, spec: ChecksumSpec) -> dict[str, ExactSum]:
    """Exact sums of the spec's sum fields over ``data``; nulls add nothing."""
    result = dict(DayFigures.zero(spec).sums)
    for batch in select_columns(data, spec, spec.sum_fields):
        for name, column in zip(spec.sum_fields, batch.columns, strict=True):
            result[name] += sum_array(column, spec.schema.field(name).type)
    return result


def distinct_keys(data: pa.RecordBatch | pa.Table, spec: ChecksumSpec) -> int:
    """Number of distinct key tuples in ``data`` (exact, after type normalisation).

    A tuple with a null part is not counted (as SQL's ``COUNT(DISTINCT ...)``): key
    fields cannot be null, so only an undecodable raw record has one, and it is no key.
    """
    if not spec.key:
        return 0
    batches = list(select_columns(data, spec, spec.key))
    if not batches:
        return 0
    keys = pa.Table.from_batches(batches).drop_null()
    return keys.group_by(list(spec.key)).aggregate([]).num_rows


# ----------------------------------------------------------------------- figures


@dataclass(frozen=True, slots=True)
class DayFigures:
    """One day's figures of one topic in one system: what ``verify`` compares.

    ``+`` merges figures of disjoint row sets; ``-`` removes rows added before (the
    dedup table replacing a key's winner: ``day - figures(old) + figures(new)``). Keys
    add up only across row sets with disjoint keys, which holds for every system that
    stores one row per key (dedup winners, the clean lake, the sinks).
    """

    #: Rows.
    rows: int = 0
    #: Distinct keys (0 when the topic does not count them).
    keys: int = 0
    #: Row checksum: sum of row hashes mod 2**64.
    checksum: int = 0
    #: Exact sum per ``sum`` field.
    sums: Mapping[str, ExactSum] = field(default_factory=dict)

    @classmethod
    def zero(cls, spec: ChecksumSpec) -> DayFigures:
        """No rows, with a zero sum for each of the spec's sum fields."""
        return cls(sums={name: zero_sum(spec.schema.field(name).type)
                         for name in spec.sum_fields})

    def _combine(self, other: DayFigures, sign: int) -> DayFigures:
        merged = dict(self.sums)
        for name, value in other.sums.items():
            mine = merged.get(name)
            if mine is None:
                mine = ExactSum(value.kind, scale=value.scale)
            merged[name] = mine + value if sign > 0 else mine - value
        return DayFigures(self.rows + sign * other.rows, self.keys + sign * other.keys,
                          (self.checksum + sign * other.checksum) & _MASK, merged)

    def __add__(self, other: DayFigures) -> DayFigures:
        return self._combine(other, 1)

    def __sub__(self, other: DayFigures) -> DayFigures:
        return self._combine(other, -1)

    def to_json(self) -> dict[str, Any]:
        return {"version": CHECKSUM_VERSION, "rows": self.rows, "keys": self.keys,
                "checksum": f"{self.checksum:016x}",
                "sums": {name: s.to_json() for name, s in sorted(self.sums.items())}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DayFigures:
        version = data.get("version")
        if version != CHECKSUM_VERSION:
            raise SchemaError(f"figures of checksum version {version!r} cannot be compared "
                              f"with version {CHECKSUM_VERSION}; recompute them")
        return cls(int(data["rows"]), int(data["keys"]), int(data["checksum"], 16),
                   {name: ExactSum.from_json(s) for name, s in data["sums"].items()})


def figures(data: pa.RecordBatch | pa.Table, spec: ChecksumSpec) -> DayFigures:
    """The figures of ``data`` (rows of one day, one row per key) under ``spec``."""
    return DayFigures(
        rows=data.num_rows,
        keys=distinct_keys(data, spec) if spec.count_distinct else 0,
        checksum=checksum(data, spec) if spec.row_checksum else 0,
        sums=sums(data, spec),
    )
