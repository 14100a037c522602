"""Messages and topics of the compaction worker pool (onepipe.agents.compact.pool).

- ``<app_id>-compact-tasks``: key ``<topic>/<day>``, value a JSON :class:`TaskMessage`
  (format 1: the :class:`~onepipe.agents.compact.plan.DayTask` as a dict, and the topic and
  partition the result goes to).
- ``<app_id>-compact-results``: key ``<topic>/<day>``, value a JSON :class:`DayResult`
  (the run, task and attempt ids, the worker, and either the day version or the error).
  Kept for a day (``retention.ms``): results are only read while a run waits for them.
- Decoding anything else raises :class:`~onepipe.schemas.errors.CompactionError` naming what is
  wrong; a consumer logs it with the record's coordinates and skips the record.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

import orjson

from onepipe.agents.compact.plan import DayTask, DayVersion
from onepipe.schemas.errors import CompactionError
from onepipe.schemas.topic_names import compact_results_topic, compact_tasks_topic
from onepipe.sinks.lake.iceberg.layout import parse_data_path
from onepipe.tables.kafka.clients import KafkaClients
from onepipe.tables.kafka.topics import ensure_topic

DEFAULT_PARTITIONS = 8
FORMAT = 2  # 2: Iceberg data files (seq, field ids); 1 was the manifest lake's
#: Results are read within a run's timeout; a day keeps them for debugging, not for replay.
_RESULTS_RETENTION_MS = 24 * 3600 * 1000


def default_worker_id() -> str:
    """``host-pid-random``: tells apart workers in results and logs."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def new_attempt() -> str:
    """An attempt id: hex, so data file names stay parseable (onepipe.sinks.lake.iceberg.layout)."""
    return uuid.uuid4().hex[:12]


# ------------------------------------------------------------------ messages


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """One day task on the tasks topic."""

    #: The staged task.
    task: DayTask
    #: Topic and partition the result goes to.
    reply_to: str
    reply_partition: int


@dataclass(frozen=True, slots=True)
class DayResult:
    """The outcome of one execution of a day task, on the results topic."""

    run_id: str
    topic: str
    date: str
    seq: int
    #: Attempt id in the names of the files this execution wrote.
    attempt: str
    #: Who executed it (:attr:`DayTaskWorker.worker_id`).
    worker: str
    #: The day version written, or None when the execution failed.
    day: DayVersion | None
    #: Why it failed (None on success).
    error: str | None = None


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise ValueError(problem)


def encode_task(message: TaskMessage) -> bytes:
    return orjson.dumps({"format": FORMAT, "task": message.task.to_dict(),
                         "reply_to": message.reply_to,
                         "reply_partition": message.reply_partition})


def decode_task(data: bytes | None) -> TaskMessage:
    """A task message; :class:`CompactionError` saying what is wrong otherwise."""
    try:
        doc = orjson.loads(data or b"")
        _require(doc.get("format") == FORMAT, f"format {doc.get('format')!r}, expected {FORMAT}")
        return TaskMessage(DayTask.from_dict(doc["task"]), str(doc["reply_to"]),
                           int(doc["reply_partition"]))
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CompactionError(f"not a day task message ({exc!r}): {(data or b'')[:200]!r}"
                              ) from exc


def encode_result(result: DayResult) -> bytes:
    day = result.day
    return orjson.dumps({
        "format": FORMAT, "run_id": result.run_id, "topic": result.topic,
        "date": result.date, "seq": result.seq, "attempt": result.attempt,
        "worker": result.worker, "error": result.error,
        "day": None if day is None else {"seq": day.seq, "files": list(day.files),
                                         "rows": day.rows, "bytes": day.bytes}})


def decode_result(data: bytes | None) -> DayResult:
    """A result message; :class:`CompactionError` saying what is wrong otherwise."""
    try:
        doc = orjson.loads(data or b"")
        _require(doc.get("format") == FORMAT, f"format {doc.get('format')!r}, expected {FORMAT}")
        raw = doc["day"]
        day = None if raw is None else DayVersion(
            seq=int(raw["seq"]), files=tuple(str(f) for f in raw["files"]),
            rows=int(raw["rows"]), bytes=int(raw["bytes"]))
        error = doc.get("error")
        _require((day is None) != (error is None), "exactly one of day and error must be set")
        return DayResult(str(doc["run_id"]), str(doc["topic"]), str(doc["date"]),
                         int(doc["seq"]), str(doc["attempt"]), str(doc["worker"]), day,
                         None if error is None else str(error))
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CompactionError(f"not a day result message ({exc!r}): {(data or b'')[:200]!r}"
                              ) from exc


def result_problem(result: DayResult, task: DayTask) -> str | None:
    """Why ``result`` cannot be the outcome of ``task`` (None: it can)."""
    if result.day is None:
        return f"it failed: {result.error}"
    if result.day.seq != task.seq:
        return f"it wrote files for seq {result.day.seq}, not {task.seq}"
    for path in result.day.files:
        parsed = parse_data_path(path)
        if parsed is None or (parsed.topic, parsed.date, parsed.seq, parsed.run_id) != (
                task.topic, task.date, task.seq, task.run_id):
            return f"{path!r} is not a data file of this task"
    return None


async def ensure_pool_topics(kafka: KafkaClients, app_id: str, *, partitions: int,
                             replication_factor: int) -> tuple[int, int]:
    """Create the tasks and results topics if missing; their partition counts."""
    tasks = await ensure_topic(kafka, compact_tasks_topic(app_id), partitions=partitions,
                               replication_factor=replication_factor)
    results = await ensure_topic(kafka, compact_results_topic(app_id), partitions=partitions,
                                 replication_factor=replication_factor,
                                 configs={"retention.ms": str(_RESULTS_RETENTION_MS)})
    return tasks, results
