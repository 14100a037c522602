"""``onepipe verify``: the same figures from every system holding a topic, compared per day.

Contract (:func:`verify_topic`):

- Systems: each :class:`~onepipe.agents.verify.sources.VerifySource` given (the clean lake, the
  ``.unique`` stream; the checksum table and the online sinks plug in the same way)
  yields per-day :class:`~onepipe.schemas.figures.DayFigures`; the raw lake is checked by
  onepipe.agents.verify.raw (its own counts and invariants, not comparable with deduplicated
  figures). Days: those asked for, else every day any system holds. A day a system
  does not hold counts as zero rows there, so a lost day disagrees.
- Per day and figure (``rows``, ``keys``, ``checksum``, ``sum:<field>``) the report says
  whether all systems agree. When any figure of a day disagrees, a **drill-down** finds
  the differing keys: each system summarises its key-hash buckets (256, top 8 bits),
  then 65536 buckets (top 16 bits) within the buckets that differ, then lists the keys
  of at most ``limit`` differing fine buckets; a key differs when its row hashes differ
  between systems or it is missing from one. At most ``limit`` keys are reported
  (``keys_truncated`` says more exist). Figures that differ while every bucket agrees
  cannot happen with one spec (the checksum covers every field), short of a 64-bit
  collision.
- **Raw record count** (figure ``raw_records``, systems ``raw`` and the checksum table):
  the checksum table counts every source record per day (duplicates and losers
  included, placed as the raw lake places them); it must equal the raw lake's records of
  the day (onepipe.agents.verify.raw). Compared on the days the table holds a raw count or day
  figures for (days it dropped by retention are not compared), and only when the table
  publishes raw counts at all. Both are as of what each has consumed: the raw lake
  trails the stream by its archive flushes (and the table by its agent's lag), so a
  disagreement on the newest day of a busy topic may only be lag - verify a quiet topic
  (all caught up) to conclude. A disagreeing raw count does not start a drill-down (the
  raw lake's own findings name missing offsets). The table's hour windows are not
  compared: verify compares days.
- ``ok`` is true only when every figure of every day agrees, no differing key was found,
  the raw lake has no gap, overlap or mismatched file, and no day of the raw lake has
  fewer distinct keys than the clean lake.
- The report is plain data (:meth:`VerifyReport.to_json`); nothing here prints.

Only the drill-down makes Python objects per row, and only for the keys of the few
buckets that differ.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from onepipe.agents.verify.checksums import ChecksumTableSource
from onepipe.agents.verify.clean import CleanLakeSource
from onepipe.agents.verify.raw import GapLocator, OffsetFinding, RawDay, RawReport, check_raw
from onepipe.agents.verify.sink import SinkSource
from onepipe.agents.verify.sources import (
    DayRange,
    KeyRows,
    VerifySource,
)
from onepipe.agents.verify.stream import SourceGapLocator, StreamSource
from onepipe.schemas.exact_sum import ExactSum
from onepipe.schemas.figures import DayFigures
from onepipe.schemas.registry_state import RegistryState
from onepipe.sinks.db import open_database
from onepipe.sinks.formats.topic_view import TopicView
from onepipe.sinks.lake.store import LakeStore
from onepipe.tables.checksum import RawCount
from onepipe.tables.kafka.clients import KafkaClients

__all__ = ["DEFAULT_LIMIT", "DayReport", "DifferingKey", "FigureCheck", "VerifyReport",
           "compare_day", "day_range", "drill_down", "verify_registered", "verify_topic"]

#: Differing keys listed per day unless asked otherwise.
DEFAULT_LIMIT = 20
#: Bucket levels of the drill-down: top bits of the key hash.
COARSE_BITS = 8
FINE_BITS = 16
MISSING = "missing"


@dataclass(frozen=True, slots=True)
class FigureCheck:
    """One figure of one day across systems."""

    #: ``rows``, ``keys``, ``checksum`` or ``sum:<field>``.
    figure: str
    #: System -> the value as shown (ints; checksums as 16 hex digits; sums as text).
    values: Mapping[str, Any]
    #: Whether every system has the same value.
    agree: bool

    def to_json(self) -> dict[str, Any]:
        return {"figure": self.figure, "values": dict(self.values), "agree": self.agree}


@dataclass(frozen=True, slots=True)
class DifferingKey:
    """A key whose rows differ between systems."""

    #: The key fields, readable (JSON-safe).
    key: Mapping[str, Any]
    #: System -> its row hash(es) as hex, or ``"missing"``.
    rows: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"key": dict(self.key), "rows": dict(self.rows)}


@dataclass(frozen=True, slots=True)
class DayReport:
    """One day: every system's figures, their comparison, the differing keys."""

    #: ``YYYY-MM-DD``.
    day: str
    #: System -> its figures (zero when the system does not hold the day).
    figures: Mapping[str, DayFigures]
    #: One check per figure.
    checks: tuple[FigureCheck, ...]
    #: Keys found by the drill-down (at most the limit).
    differing_keys: tuple[DifferingKey, ...] = ()
    #: Whether more differing keys exist than are listed.
    keys_truncated: bool = False
    #: The raw lake's counts of the day (None when not checked).
    raw: RawDay | None = None
    #: Problems of this day outside the figures (raw keys below clean keys, findings).
    problems: tuple[str, ...] = ()

    @property
    def disagreeing(self) -> tuple[str, ...]:
        """Names of the figures that differ."""
        return tuple(c.figure for c in self.checks if not c.agree)

    @property
    def ok(self) -> bool:
        return not self.disagreeing and not self.differing_keys and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"day": self.day, "ok": self.ok, "disagreeing": list(self.disagreeing),
                "figures": {s: f.to_json() for s, f in self.figures.items()},
                "checks": [c.to_json() for c in self.checks],
                "differing_keys": [k.to_json() for k in self.differing_keys],
                "keys_truncated": self.keys_truncated,
                "raw": self.raw.to_json() if self.raw is not None else None,
                "problems": list(self.problems)}


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The result of one verify run of one topic."""

    #: Kafka topic.
    topic: str
    #: Systems compared, in report order.
    systems: tuple[str, ...]
    #: Days in order.
    days: tuple[DayReport, ...]
    #: Gaps, overlaps and mismatched raw files (all days).
    raw_findings: tuple[OffsetFinding, ...] = ()
    #: Whether the raw lake was checked.
    raw_checked: bool = False
    #: System -> why it was not compared (e.g. no ``.unique`` topic yet).
    skipped: Mapping[str, str] = field(default_factory=dict)
    #: When the run finished, ISO-8601 UTC.
    verified_at: str = ""

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.days) and not self.raw_findings

    def summary(self) -> dict[str, Any]:
        """A few flat fields for a status page (the full report is :meth:`to_json`)."""
        bad = [d for d in self.days if not d.ok]
        return {"topic": self.topic, "ok": self.ok, "verified_at": self.verified_at,
                "systems": ", ".join(self.systems), "days": len(self.days),
                "disagreeing_days": ", ".join(d.day for d in bad) or "none",
                "differing_keys": sum(len(d.differing_keys) for d in bad),
                "raw_findings": len(self.raw_findings)}

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "ok": self.ok, "verified_at": self.verified_at,
                "systems": list(self.systems),
                "skipped": dict(self.skipped), "raw_checked": self.raw_checked,
                "days": [d.to_json() for d in self.days],
                "raw_findings": [f.to_json() for f in self.raw_findings]}


# ------------------------------------------------------------------ comparison


def _show_sum(value: ExactSum) -> str:
    return str(value.value())


def compare_day(figures: Mapping[str, DayFigures], sum_fields: Sequence[str]
                ) -> tuple[FigureCheck, ...]:
    """One check per figure of one day over the systems' figures."""
    checks = []
    for name in ("rows", "keys"):
        values = {s: getattr(f, name) for s, f in figures.items()}
        checks.append(FigureCheck(name, values, len(set(values.values())) <= 1))
    for field_name in sum_fields:
        exact = {s: f.sums.get(field_name) for s, f in figures.items()}
        shown = {s: _show_sum(v) if v is not None else None for s, v in exact.items()}
        checks.append(FigureCheck(f"sum:{field_name}", shown, len(set(exact.values())) <= 1))
    sums = {s: f"{f.checksum:016x}" for s, f in figures.items()}
    checks.append(FigureCheck("checksum", sums, len(set(sums.values())) <= 1))
    return tuple(checks)


def _differing_buckets(summaries: Sequence[Mapping[int, Any]]) -> set[int]:
    every = set().union(*summaries) if summaries else set()
    return {b for b in every if len({s.get(b) for s in summaries}) > 1}


async def drill_down(day: str, sources: Sequence[VerifySource], limit: int = DEFAULT_LIMIT
                     ) -> tuple[tuple[DifferingKey, ...], bool]:
    """The keys of ``day`` whose rows differ between ``sources``; whether there are more."""
    if len(sources) < 2 or limit < 1:
        return (), False
    coarse = await asyncio.gather(*(s.bucket_summaries(day, COARSE_BITS) for s in sources))
    differing = _differing_buckets(coarse)
    if not differing:
        return (), False
    fine = await asyncio.gather(*(s.bucket_summaries(day, FINE_BITS, COARSE_BITS,
                                                     frozenset(differing)) for s in sources))
    fine_differing = sorted(_differing_buckets(fine))
    chosen = frozenset(fine_differing[:limit])
    listed = await asyncio.gather(*(s.keys(day, FINE_BITS, chosen) for s in sources))
    found = _differing_keys(sources, listed)
    truncated = len(fine_differing) > limit or len(found) > limit
    return tuple(found[:limit]), truncated


def _differing_keys(sources: Sequence[VerifySource], listed: Sequence[Mapping[int, KeyRows]]
                    ) -> list[DifferingKey]:
    out = []
    for key_hash in set().union(*listed):
        held = [rows.get(key_hash) for rows in listed]
        hashes = {tuple(h.row_hashes) if h is not None else None for h in held}
        if len(hashes) <= 1:
            continue
        shown = next(h.key for h in held if h is not None)
        out.append(DifferingKey(shown, {
            s.name: [f"{x:016x}" for x in h.row_hashes] if h is not None else MISSING
            for s, h in zip(sources, held, strict=True)}))
    out.sort(key=lambda k: [str(v) for v in k.key.values()])
    return out


# ------------------------------------------------------------------ the run


def day_range(date: str | None = None, first: str | None = None, last: str | None = None
              ) -> DayRange | None:
    """The days a user asked for (``--date D`` or ``--from D --to D``); None for all.

    Raises :class:`ValueError` with a message for people: a malformed day, ``date``
    together with a range, or ``first`` after ``last``.
    """
    for label, value in (("date", date), ("from", first), ("to", last)):
        if value is not None and not _is_day(value):
            msg = f"{label} must be a UTC day like 2026-11-26, got {value!r}"
            raise ValueError(msg)
    if date is not None:
        if first is not None or last is not None:
            msg = "give either a date or a from/to range, not both"
            raise ValueError(msg)
        return DayRange(date, date)
    if first is not None and last is not None and first > last:
        msg = f"the range starts ({first}) after it ends ({last})"
        raise ValueError(msg)
    return DayRange(first, last) if first is not None or last is not None else None


def _is_day(text: str) -> bool:
    try:
        return dt.date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


async def verify_registered(topic: str, state: RegistryState, *, lake: LakeStore,
                            kafka: KafkaClients | None, days: DayRange | None = None,
                            cache_dir: Path | None = None, limit: int = DEFAULT_LIMIT,
                            extra: Sequence[VerifySource] = (),
                            environ: Mapping[str, str] | None = None,
                            catalog_uri: str = "", as_of: int | str | None = None
                            ) -> VerifyReport:
    """Verify a registered topic: clean lake, ``.unique`` stream, checksum table, online
    sinks, raw lake, ``extra``.

    Raises :class:`~onepipe.schemas.errors.NotFoundError` for a topic the registry does not know.
    The stream is skipped (and the report says why) for a topic without key (nothing is
    deduplicated), without ``kafka``, or while ``<topic>.unique`` does not exist. The
    checksum table is compared whenever the stream is and ``<topic>.checksums`` exists.
    Each online sink is compared when its DSN variable is set in ``environ`` (default: this
    process's environment), skipped with the reason otherwise.
    """
    meta = state.topic_metadata(topic)
    schema = state.reader_schema(topic)
    view = TopicView.build(meta, schema)
    sources: list[VerifySource] = [CleanLakeSource(view, lake, cache_dir,
                                                   catalog_uri=catalog_uri, as_of=as_of)]
    skipped: dict[str, str] = {}
    if not meta.key:
        skipped["stream"] = "the topic has no key, so it is not deduplicated"
    elif kafka is None:
        skipped["stream"] = "no broker given"
    else:
        stream = StreamSource(view, kafka, schema, state.schema_by_id)
        if await stream.exists():
            sources.append(stream)
            # The checksum table, when a checksum agent publishes one (its drill-down is
            # the stream's: onepipe.agents.verify.checksums).
            table = ChecksumTableSource(view, kafka, stream)
            if await table.exists():
                sources.append(table)
        else:
            skipped["stream"] = (f"{stream.topic} does not exist: no dedup agent has run "
                                 "for this topic")
    sinks: list[SinkSource] = []
    env = os.environ if environ is None else environ
    for spec in meta.sinks:
        dsn = env.get(spec.dsn_env)
        if not dsn:
            skipped[spec.name] = f"environment variable {spec.dsn_env} is not set here"
            continue
        sinks.append(SinkSource(view, spec, open_database(spec.kind, dsn), schema))
    sources.extend(sinks)
    sources.extend(extra)
    locate = (SourceGapLocator(view, kafka, schema, state.schema_by_id)
              if kafka is not None else None)
    try:
        return await verify_topic(view, sources, days=days, lake=lake, cache_dir=cache_dir,
                                  limit=limit, skipped=skipped, locate=locate)
    finally:
        for sink in sinks:
            await sink.database.stop()


async def verify_topic(view: TopicView, sources: Sequence[VerifySource], *,
                       days: DayRange | None = None, lake: LakeStore | None = None,
                       cache_dir: Path | None = None, limit: int = DEFAULT_LIMIT,
                       skipped: Mapping[str, str] | None = None,
                       locate: GapLocator | None = None) -> VerifyReport:
    """Compare ``sources`` (and check the raw lake of ``lake``, when given) per day."""
    async def raw_check() -> RawReport | None:
        if lake is None:
            return None
        # "Nothing merged is lost" is checked against the clean lake being verified.
        clean = next((s for s in sources if isinstance(s, CleanLakeSource)), None)
        merged = await clean.watermark() if clean is not None else {}
        return await check_raw(lake, view, days, cache_dir, count_keys=bool(view.meta.key),
                               locate=locate, merged=merged)

    # Every system at once: their reads are I/O (files, Kafka) and threads (hashing).
    results = await asyncio.gather(raw_check(), *(s.figures(days) for s in sources))
    raw = cast(RawReport | None, results[0])
    got = cast(list[dict[str, DayFigures]], results[1:])
    all_days = set().union(*got) | set(raw.days if raw is not None else ())
    if days is not None and days.single is not None:
        all_days.add(days.single)  # asked for by name: shown even when nobody holds it
    zero = DayFigures.zero(view.spec)
    findings = raw.findings if raw is not None else ()
    tables = [s for s in sources if isinstance(s, ChecksumTableSource) and s.source_offsets]
    counted = {s.name: set(s.raw_counts) | set(g) for s, g in zip(sources, got, strict=True)
               if s in tables}
    all_days |= set().union(*counted.values()) if counted else set()
    reports = []
    for day in sorted(all_days):
        per_system = {s.name: g.get(day, zero) for s, g in zip(sources, got, strict=True)}
        checks = compare_day(per_system, view.spec.sum_fields)
        keys: tuple[DifferingKey, ...] = ()
        truncated = False
        if any(not c.agree for c in checks):
            keys, truncated = await drill_down(day, sources, limit)
        raw_day = raw.days.get(day, RawDay()) if raw is not None else None
        held = [s for s in tables if day in counted[s.name]]
        if raw_day is not None and held:
            values = {"raw": raw_day.records, **{
                s.name: s.raw_counts.get(day, RawCount()).records for s in held}}
            checks += (FigureCheck("raw_records", values, len(set(values.values())) <= 1),)
        problems = [f"raw lake {f.kind}: {f.detail}" for f in findings if day in f.days]
        clean = per_system.get("clean")
        if raw_day is not None and clean is not None and view.meta.key \
                and raw_day.keys < clean.keys:
            problems.append(f"the raw lake holds {raw_day.keys} distinct key(s) on {day}, "
                            f"fewer than the clean lake's {clean.keys}: raw files are missing")
        reports.append(DayReport(day, per_system, checks, keys, truncated, raw_day,
                                 tuple(problems)))
    return VerifyReport(view.meta.topic, tuple(s.name for s in sources), tuple(reports),
                        tuple(findings), raw is not None, dict(skipped or {}),
                        dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
