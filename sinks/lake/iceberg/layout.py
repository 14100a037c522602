"""Where the clean lake's objects live, and what their names say; no I/O: names in, names out.

``clean/<topic>/``
    The location of the topic's Iceberg table ``("onepipe", "<topic>")``: ``metadata/``
    (Iceberg's own metadata, manifest lists and manifests) and ``data/``.
``clean/<topic>/data/day=<YYYY-MM-DD>/<seq>-<run id>[-<attempt>]-<i>.parquet``
    One data file of one day. ``seq`` is the table sequence number of the snapshot that
    can publish it (the table's ``last_sequence_number`` + 1 when its run planned): a
    snapshot commit asserts the snapshot it planned from, so once the table's sequence
    number reaches ``seq`` a file that is not referenced never will be (that is how a
    sweep tells a crashed run's files from a running one's). ``run id`` (uuid hex) keeps
    the files of concurrent or crashed runs apart; ``attempt`` (hex, only on day tasks of
    the worker pool) keeps two executions of one task apart; ``i`` orders the files of a
    day (rows are sorted across them in that order).
``clean/<topic>/_runs/v<seq>/<run id>/<name>.parquet``
    Inputs a run that will publish ``seq`` stages for day tasks executed by other
    workers; useless once the table's sequence number reaches ``seq``.
``clean/<topic>/_schedule/<slot, 20 digits>.json``
    Claims of the periodic compaction (onepipe.agents.compact.schedule): one per slot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CLEAN", "CleanFile", "claim_path", "claim_prefix", "data_file_path",
           "data_prefix", "parse_claim_path", "parse_data_path", "parse_staging_path",
           "staging_prefix", "staging_topic_prefix", "table_prefix"]

CLEAN = "clean"
SLOT_DIGITS = 20
_DATA_FILE = re.compile(
    r"^clean/(?P<topic>[^/]+)/data/day=(?P<date>\d{4}-\d{2}-\d{2})/(?P<seq>\d+)-"
    r"(?P<run>[0-9a-f]+)(?:-(?P<attempt>[0-9a-f]+))?-(?P<index>\d+)\.parquet$")
_STAGED = re.compile(r"^clean/(?P<topic>[^/]+)/_runs/v(?P<seq>\d+)/(?P<run>[0-9a-f]+)/")
_CLAIM = re.compile(r"^clean/(?P<topic>[^/]+)/_schedule/(?P<slot>\d{20})\.json$")


@dataclass(frozen=True, slots=True)
class CleanFile:
    """One data file of one clean day, as its path describes it."""

    #: Kafka topic.
    topic: str
    #: UTC day, ``YYYY-MM-DD``.
    date: str
    #: The table sequence number of the only snapshot that can publish it.
    seq: int
    #: Id of the compaction run that wrote it.
    run_id: str
    #: Position of the file within its day.
    index: int
    #: Id of the execution of a pooled day task that wrote it ('' for the compactor's own).
    attempt: str = ""


def table_prefix(topic: str) -> str:
    """The table's location, relative to the lake root (with a trailing '/')."""
    return f"{CLEAN}/{topic}/"


def data_prefix(topic: str) -> str:
    return f"{CLEAN}/{topic}/data/"


def data_file_path(topic: str, date: str, seq: int, run_id: str, index: int,
                   attempt: str = "") -> str:
    name = f"{run_id}-{attempt}" if attempt else run_id
    return f"{data_prefix(topic)}day={date}/{seq:010d}-{name}-{index:05d}.parquet"


def parse_data_path(path: str) -> CleanFile | None:
    """The data file a lake path names, or None for anything else (metadata, strays)."""
    match = _DATA_FILE.match(path)
    if match is None:
        return None
    return CleanFile(topic=match["topic"], date=match["date"], seq=int(match["seq"]),
                     run_id=match["run"], index=int(match["index"]),
                     attempt=match["attempt"] or "")


def staging_topic_prefix(topic: str) -> str:
    return f"{CLEAN}/{topic}/_runs/"


def staging_prefix(topic: str, seq: int, run_id: str) -> str:
    """Where the run ``run_id`` (to publish ``seq``) stages day-task inputs."""
    return f"{staging_topic_prefix(topic)}v{seq}/{run_id}/"


def parse_staging_path(path: str) -> tuple[int, str] | None:
    """(seq, run id) of a staged object, or None for anything else."""
    match = _STAGED.match(path)
    return (int(match["seq"]), match["run"]) if match else None


def claim_prefix(topic: str) -> str:
    return f"{CLEAN}/{topic}/_schedule/"


def claim_path(topic: str, slot: int) -> str:
    return f"{claim_prefix(topic)}{slot:0{SLOT_DIGITS}d}.json"


def parse_claim_path(path: str) -> int | None:
    """The time slot a schedule claim names, or None for anything else."""
    match = _CLAIM.match(path)
    return int(match["slot"]) if match else None
