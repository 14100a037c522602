"""What an agent process tells its worker, and how it crosses their pipe.

Contract:
- A frame is a length-prefixed pickle (:func:`write_frame`, :func:`read_frame`), between
  a worker and the agent processes it started only; one larger than
  :data:`MAX_FRAME_BYTES` means the pipe is corrupt (ValueError), never a buffer that
  grows without bound.
- The worker's settings go down as the first frame on the process's stdin; its
  :class:`ProcessReport` comes back every ``REPORT_SECONDS`` (onepipe.app.agent_processes)
  on a pipe of its own: its ``/metrics`` families (as plain tuples, :func:`to_frames`) and
  what the worker's ``/health``, ``/status``, ``/sinks`` and ``/readyz`` show of it.
- :class:`Carried` keeps what agent processes that exited had counted (their last
  report's counters), so the worker's sums in ``/health``, ``/status`` and ``/sinks`` do
  not drop when one starts again. An agent process sends a last report after its own
  stop; one killed (or whose worker's loop was too busy to read its pipe) leaves out what
  it counted after the last report the worker read. ``/metrics`` keeps each process's own
  counters instead, which start again with the process (Prometheus reads that as a reset).
- :func:`label_processes` merges every process's families into one ``/metrics``, each
  sample labelled with its process; group-wide families are not labelled.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from onepipe.agents.archive import ArchiveMetrics, combined_metrics, counted
from onepipe.agents.sink import SinkStatus, combined_statuses, counted_status

__all__ = ["MAX_FRAME_BYTES", "Carried", "Family", "ProcessReport", "Received", "counter_values",
           "label_processes", "read_first_frame", "read_frame", "read_frame_bytes", "to_frames",
           "write_frame"]

_HEADER = struct.Struct(">I")
#: The largest frame either side accepts (a report of a thousand partitions is tens of
#: kilobytes).
MAX_FRAME_BYTES = 64 * 1024 * 1024
#: Metric families that are not one process's own (group-wide lag, these processes):
#: never labelled.
_GROUP_WIDE = ("onepipe_consumer_", "onepipe_lag_monitor_")
_WORKER_WIDE = frozenset({"onepipe_worker_agent_processes",
                          "onepipe_worker_agent_process_restarts"})

#: A metric family as sent between processes: name, help, type, unit, samples.
Family = tuple[str, str, str, str, list[tuple[Any, ...]]]


@dataclass(frozen=True, slots=True)
class ProcessReport:
    """What an agent process sends every :data:`REPORT_SECONDS`: its ``/metrics``
    families, and what the worker's other views show of it."""

    families: list[Family]
    #: Its archive agent's counters; None when it runs none.
    archive: ArchiveMetrics | None = None
    #: Its sink agents' statuses.
    sinks: list[SinkStatus] = field(default_factory=list)
    #: Why each of its batch agents that is not working its share yet is not (/readyz).
    waiting: list[str] = field(default_factory=list)


def write_frame(stream: asyncio.WriteTransport | asyncio.StreamWriter, value: object) -> None:
    """One length-prefixed pickle (between a worker and its own agent processes only)."""
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(body)) + body)


async def read_frame(stream: asyncio.StreamReader) -> Any:
    """The next frame, or None at end-of-file; ValueError for one beyond the bound."""
    body = await read_frame_bytes(stream)
    return None if body is None else pickle.loads(body)  # noqa: S301 - our own process


async def read_frame_bytes(stream: asyncio.StreamReader) -> bytes | None:
    """The next frame still pickled (:func:`read_frame`)."""
    try:
        header = await stream.readexactly(_HEADER.size)
        return await stream.readexactly(_size(header))
    except asyncio.IncompleteReadError:
        return None


def _size(header: bytes) -> int:
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:  # not a frame of ours: something else wrote into the pipe
        msg = f"a frame of {size} bytes, beyond {MAX_FRAME_BYTES}: the pipe is corrupt"
        raise ValueError(msg)
    return int(size)


def read_first_frame(fd: int) -> Any:
    """The first frame, read before any event loop exists; None at end-of-file."""
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    body = _read_exactly(fd, _size(header))
    return None if body is None else pickle.loads(body)  # noqa: S301 - from the worker


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def to_frames(families: Iterable[Metric]) -> list[Family]:
    """Metric families as plain tuples: what an agent process reports."""
    return [(f.name, f.documentation, f.type, f.unit, [tuple(s) for s in f.samples])
            for f in families]


def label_processes(own: Iterable[Metric], others: dict[int, list[Family]]) -> list[Metric]:
    """Every process's families as one family a name, each sample labelled with its
    process (the worker's own ``0``); group-wide families stay as they are."""
    merged: dict[str, Metric] = {}

    def add(family: Family, process: str | None) -> None:
        name, documentation, kind, unit, samples = family
        if process is not None and (name.startswith(_GROUP_WIDE) or name in _WORKER_WIDE):
            process = None
        target = merged.get(name)
        if target is None:
            target = merged[name] = Metric(name, documentation, kind, unit)
        for sample in samples:
            labels = sample[1] if process is None else {**sample[1], "process": process}
            target.samples.append(Sample(sample[0], labels, *sample[2:]))

    for family in to_frames(own):
        add(family, "0")
    for index, families in sorted(others.items()):
        for family in families:
            add(family, str(index))
    return list(merged.values())


class Received:
    """An agent process's last report: when it came, pickled, unpickled once asked."""

    __slots__ = ("_report", "at", "frame")

    def __init__(self, at: float, frame: bytes) -> None:
        self.at, self.frame = at, frame
        self._report: ProcessReport | None = None

    def report(self) -> ProcessReport:
        if self._report is None:
            self._report = pickle.loads(self.frame)  # noqa: S301 - our own agent process
        return self._report


def counter_values(families: Iterable[Family]) -> Iterator[tuple[str, float]]:
    """(name, value) of each unlabelled counter among a report's families: what the
    worker's sums read (a labelled family's first sample is one label set's, not the
    family's)."""
    for name, _, kind, _, samples in families:
        if kind == "counter" and samples and not samples[0][1]:
            yield name, samples[0][2]


@dataclass(slots=True)
class Carried:
    """What the agent processes that exited had counted, by the worker's views' shapes."""

    #: Unlabelled counter families by name (:func:`counter_values`).
    counters: dict[str, float] = field(default_factory=dict)
    #: The archive's counters (:func:`onepipe.agents.archive.counted`); None: none yet.
    archive: ArchiveMetrics | None = None
    #: Each sink's counters (:func:`onepipe.agents.sink.counted_status`), by (topic, sink
    #: name).
    sinks: dict[tuple[str, str], SinkStatus] = field(default_factory=dict)

    def add(self, report: ProcessReport) -> None:
        """Carry an exited process's last report's counters."""
        for name, value in counter_values(report.families):
            self.counters[name] = self.counters.get(name, 0) + value
        if report.archive is not None:
            self.archive = counted(combined_metrics(
                [report.archive, *([self.archive] if self.archive is not None else [])]))
        for status in report.sinks:
            key = (status.topic, status.spec.name)
            held = self.sinks.get(key)
            [self.sinks[key]] = combined_statuses(
                [counted_status(status), *([held] if held is not None else [])])
