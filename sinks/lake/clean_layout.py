"""Where the clean lake lives, and how to read versions and manifest numbers back from names.

``clean/<topic>/date=<YYYY-MM-DD>/v<N>/<run id>[-<attempt>]-<i>.parquet``
    One file of version ``N`` of one day. ``N`` is the sequence number of the manifest
    that publishes it, so a file can only ever be referenced by manifest ``N`` and its
    successors; ``run id`` (uuid hex) keeps files of a crashed or concurrent run out of
    anybody else's version; ``attempt`` (hex, only on day tasks run by the worker pool,
    onepipe.agents.compact.pool) keeps two executions of one task apart, so the manifest can
    reference exactly one of them; ``i`` orders the files of one version (rows are sorted
    across them in that order).
``clean/<topic>/_manifest/<seq, 20 digits>.json``
    The manifest log (onepipe.sinks.lake.clean_manifest): the highest ``seq`` is the current state.
``clean/<topic>/_runs/v<N>/<run id>/<name>.parquet``
    Inputs a run that will publish version ``N`` stages for day tasks executed by other
    workers. No reader looks here; like a data file of ``v<N>`` it is useless once a
    manifest ``>= N`` exists (that run can no longer commit), which is when a sweep may
    delete it.
``clean/<topic>/_schedule/<slot, 20 digits>.json``
    Claims of the periodic compaction (onepipe.agents.compact.schedule): one per time slot.

No I/O here: names in, names out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CLEAN = "clean"
SEQ_DIGITS = 20
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CLEAN_FILE = re.compile(
    r"^clean/(?P<topic>[^/]+)/date=(?P<date>\d{4}-\d{2}-\d{2})/v(?P<version>\d+)/"
    r"(?P<run>[0-9a-f]+)(?:-(?P<attempt>[0-9a-f]+))?-(?P<index>\d+)\.parquet$"
)
STAGING = "_runs"
_STAGED = re.compile(rf"^clean/(?P<topic>[^/]+)/{STAGING}/v(?P<version>\d+)/(?P<run>[0-9a-f]+)/")
_CLAIM = re.compile(r"^clean/(?P<topic>[^/]+)/_schedule/(?P<slot>\d{20})\.json$")
_MANIFEST = re.compile(r"^clean/(?P<topic>[^/]+)/_manifest/(?P<seq>\d{20})\.json$")


@dataclass(frozen=True, slots=True)
class CleanFile:
    """One file of one version of one clean day, as its path describes it."""

    #: Kafka topic.
    topic: str
    #: UTC day, ``YYYY-MM-DD``.
    date: str
    #: The manifest sequence number that publishes (published) this version.
    version: int
    #: Id of the compaction run that wrote it.
    run_id: str
    #: Position of the file within its version.
    index: int
    #: Id of the execution of a pooled day task that wrote it ('' for the compactor's own).
    attempt: str = ""


def is_day(text: str) -> bool:
    """Whether ``text`` looks like a ``YYYY-MM-DD`` day."""
    return bool(_DAY.match(text))


def clean_topic_prefix(topic: str) -> str:
    return f"{CLEAN}/{topic}/"


def manifest_prefix(topic: str) -> str:
    return f"{CLEAN}/{topic}/_manifest/"


def manifest_path(topic: str, seq: int) -> str:
    return f"{manifest_prefix(topic)}{seq:0{SEQ_DIGITS}d}.json"


def parse_manifest_path(path: str) -> int | None:
    """The sequence number a manifest path names, or None for anything else."""
    match = _MANIFEST.match(path)
    return int(match["seq"]) if match else None


def clean_file_path(topic: str, date: str, version: int, run_id: str, index: int,
                    attempt: str = "") -> str:
    name = f"{run_id}-{attempt}" if attempt else run_id
    return f"{CLEAN}/{topic}/date={date}/v{version}/{name}-{index:05d}.parquet"


def staging_topic_prefix(topic: str) -> str:
    return f"{CLEAN}/{topic}/{STAGING}/"


def staging_prefix(topic: str, version: int, run_id: str) -> str:
    """Where the run ``run_id`` (to publish ``version``) stages day-task inputs."""
    return f"{staging_topic_prefix(topic)}v{version}/{run_id}/"


def parse_staging_path(path: str) -> tuple[int, str] | None:
    """(version, run id) of a staged object, or None for anything else."""
    match = _STAGED.match(path)
    return (int(match["version"]), match["run"]) if match else None


def claim_prefix(topic: str) -> str:
    return f"{CLEAN}/{topic}/_schedule/"


def claim_path(topic: str, slot: int) -> str:
    return f"{claim_prefix(topic)}{slot:0{SEQ_DIGITS}d}.json"


def parse_claim_path(path: str) -> int | None:
    """The time slot a schedule claim names, or None for anything else."""
    match = _CLAIM.match(path)
    return int(match["slot"]) if match else None


def parse_clean_path(path: str) -> CleanFile | None:
    """The clean file a path names, or None for anything else (manifests, strays)."""
    match = _CLEAN_FILE.match(path)
    if match is None:
        return None
    return CleanFile(topic=match["topic"], date=match["date"], version=int(match["version"]),
                     run_id=match["run"], index=int(match["index"]),
                     attempt=match["attempt"] or "")
