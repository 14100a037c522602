"""The clean lake's manifest: which version of each day is current, as an object log.

Contract:
- The manifest of a topic is a log of objects ``clean/<topic>/_manifest/<seq>.json``
  (onepipe.sinks.lake.clean_layout), each a **full snapshot** (:class:`Manifest`): per day
  the current version and its exact file list, the raw watermark per partition, and the
  files of superseded versions still kept for readers. The highest ``seq`` is the current
  state; ``seq`` 0 (no object) is the empty lake.
- **Publishing is atomic.** Data files are written first, under names no manifest
  references yet; :func:`commit` then creates ``seq`` with ``put_if_absent`` (S3
  ``If-None-Match: *``, a hard link locally). Exactly one writer creates each ``seq``; a
  loser gets :class:`~onepipe.schemas.errors.CompactionConflict` (retriable: re-plan from the new
  latest manifest) and nothing it wrote is referenced. A reader that loads one manifest
  and reads only the files it lists sees one whole version of every day, never a mix.
- Manifests are never rewritten or deleted: deleting an old ``seq`` would let a stale
  writer create it again and believe it had published. They are small (one per run);
  pruning the log needs a floor marker and is future work.
- A manifest that does not parse raises :class:`~onepipe.schemas.errors.CompactionError` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from onepipe.schemas.errors import CompactionConflict, CompactionError
from onepipe.sinks.lake.clean_layout import (
    is_day,
    manifest_path,
    manifest_prefix,
    parse_manifest_path,
)
from onepipe.sinks.lake.store import LakeStore

FORMAT = 1
_EPOCH = datetime.fromtimestamp(0, tz=UTC)


@dataclass(frozen=True, slots=True)
class DayVersion:
    """The current version of one clean day."""

    #: The manifest ``seq`` that published it (also the ``v<N>`` folder of its files).
    version: int
    #: Lake paths of its Parquet files, in order (rows are sorted across them).
    files: tuple[str, ...]
    #: Rows in all files together (one per unique key; 0 for a day emptied by moves).
    rows: int
    #: Bytes of all files together.
    bytes: int


@dataclass(frozen=True, slots=True)
class RetiredFile:
    """A file of a superseded version, kept so readers of older manifests can finish."""

    #: Lake path of the file.
    path: str
    #: When the manifest that superseded it was committed (UTC).
    retired_at: datetime


@dataclass(frozen=True, slots=True)
class Manifest:
    """One snapshot of a topic's clean lake; see the module contract."""

    #: Kafka topic.
    topic: str
    #: Position in the log; 0 is the empty lake (no manifest object yet).
    seq: int = 0
    #: When it was committed (UTC); the epoch for the empty lake.
    created_at: datetime = _EPOCH
    #: Id of the compaction run that wrote it ('' for the empty lake).
    run_id: str = ""
    #: ``YYYY-MM-DD`` -> the current version of that day.
    days: Mapping[str, DayVersion] = field(default_factory=dict)
    #: Kafka partition -> the next raw offset not yet merged into ``days`` (watermark).
    raw_merged: Mapping[int, int] = field(default_factory=dict)
    #: Files of superseded versions not deleted yet, oldest first.
    retired: tuple[RetiredFile, ...] = ()

    def files(self) -> set[str]:
        """Every file this manifest references: current versions and retired files."""
        current = {path for day in self.days.values() for path in day.files}
        return current | {r.path for r in self.retired}

    @property
    def rows(self) -> int:
        return sum(day.rows for day in self.days.values())


def manifest_to_json(manifest: Manifest) -> bytes:
    """The object bytes of ``manifest`` (sorted keys, so equal manifests are equal bytes)."""
    doc = {
        "format": FORMAT,
        "topic": manifest.topic,
        "seq": manifest.seq,
        "created_at": manifest.created_at.isoformat(),
        "run_id": manifest.run_id,
        "days": {
            day: {"version": v.version, "files": list(v.files), "rows": v.rows, "bytes": v.bytes}
            for day, v in sorted(manifest.days.items())
        },
        "raw_merged": {str(p): o for p, o in sorted(manifest.raw_merged.items())},
        "retired": [{"path": r.path, "retired_at": r.retired_at.isoformat()}
                    for r in manifest.retired],
    }
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)


def manifest_from_json(data: bytes, where: str = "manifest") -> Manifest:
    """Parse manifest bytes; :class:`CompactionError` naming ``where`` if malformed."""
    try:
        return _parse(orjson.loads(data))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CompactionError(
            f"{where} is not a valid clean-lake manifest: {exc!r}; it was written by "
            "another onepipe version or damaged - restore it from the bucket's versioning "
            "or remove the clean lake of this topic and compact again"
        ) from exc


def _parse(doc: Any) -> Manifest:
    if doc.get("format") != FORMAT:
        raise ValueError(f"unknown format {doc.get('format')!r}, expected {FORMAT}")
    days = {}
    for day, v in doc["days"].items():
        if not is_day(day):
            raise ValueError(f"day {day!r} is not YYYY-MM-DD")
        days[day] = DayVersion(version=_int(v["version"]),
                               files=tuple(str(f) for f in v["files"]),
                               rows=_int(v["rows"]), bytes=_int(v["bytes"]))
    return Manifest(
        topic=str(doc["topic"]),
        seq=_int(doc["seq"]),
        created_at=_time(doc["created_at"]),
        run_id=str(doc["run_id"]),
        days=days,
        raw_merged={int(p): _int(o) for p, o in doc["raw_merged"].items()},
        retired=tuple(RetiredFile(str(r["path"]), _time(r["retired_at"]))
                      for r in doc["retired"]),
    )


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


def _time(value: Any) -> datetime:
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError(f"time {value!r} has no zone")
    return moment.astimezone(UTC)


async def latest_seq(lake: LakeStore, topic: str) -> int:
    """The highest committed ``seq`` of ``topic`` (0 when none)."""
    seqs = [s for obj in await lake.list(manifest_prefix(topic))
            if (s := parse_manifest_path(obj.path)) is not None]
    return max(seqs, default=0)


async def load_manifest(lake: LakeStore, topic: str, seq: int) -> Manifest:
    """Manifest ``seq`` of ``topic`` (``seq`` 0 is the empty manifest)."""
    if seq == 0:
        return Manifest(topic=topic)
    path = manifest_path(topic, seq)
    manifest = manifest_from_json(await lake.get(path), f"{lake.url}/{path}")
    if manifest.topic != topic or manifest.seq != seq:
        raise CompactionError(
            f"{lake.url}/{path} holds the manifest of {manifest.topic!r} seq {manifest.seq}; "
            "it was copied or renamed by hand - put it back under its own name")
    return manifest


async def load_latest(lake: LakeStore, topic: str) -> Manifest:
    """The current manifest of ``topic``: the highest ``seq`` listed (empty when none)."""
    return await load_manifest(lake, topic, await latest_seq(lake, topic))


async def commit(lake: LakeStore, manifest: Manifest) -> None:
    """Publish ``manifest`` as its ``seq``; :class:`CompactionConflict` if taken already."""
    if manifest.seq < 1:
        raise CompactionError(f"a committed manifest needs seq >= 1, got {manifest.seq}")
    path = manifest_path(manifest.topic, manifest.seq)
    if not await lake.put_if_absent(path, manifest_to_json(manifest)):
        raise CompactionConflict(
            f"another compactor published {lake.url}/{path} first; re-plan from the new "
            f"latest manifest and run again (nothing of this run is referenced)")
