"""A worker's local copy of the registry log: what makes schema ids survive a lost log.

Why: schema ids are the registry's promise. A record in Kafka or the lake carries only
its schema id, so an id given to a different schema makes those records undecodable or,
worse, wrongly decoded. The ids live in the registry log; a broker that loses its log
(the embedded in-memory broker at every restart, a recreated topic on Apache Kafka)
would let the next registration start again at id 1.

Contract:
- Every record the registry store applies is appended here (offset, key, value bytes as
  written), in log order, once: records at or below the last journaled offset are not
  appended again. A torn last line (a crash mid-write) is ignored when read.
- At start the store compares the log's high watermark with the journal
  (onepipe.tables.registry_store): an **empty** log is restored from the journal (every
  record appended again, in order, values unchanged, so every id, version, config and
  catalog entry comes back as it was); a log that is not empty but ends **below** the
  journal's last offset is refused: it is another log, and only a person can tell which
  one is right (delete the journal file to accept the log as it is).
- One writer per file: the worker (and the catalog apply it runs before starting).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka.errors import KafkaError

from onepipe.schemas.errors import BrokerError
from onepipe.tables.kafka.clients import Producer

log = logging.getLogger(__name__)

__all__ = ["JournalRecord", "RegistryJournal"]


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One registry log record as it was written."""

    offset: int
    key: bytes | None
    value: bytes | None


def _b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode() if data is not None else None


def _unb64(text: object) -> bytes | None:
    return base64.b64decode(text) if isinstance(text, str) else None


class RegistryJournal:
    """An append-only file of registry log records (JSON lines)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: int | None = None

    def read(self) -> list[JournalRecord]:
        """Every journaled record, in log order."""
        records: list[JournalRecord] = []
        with contextlib.suppress(FileNotFoundError), self.path.open("rb") as lines:
            for number, line in enumerate(lines, 1):
                try:
                    item = orjson.loads(line)
                    records.append(JournalRecord(int(item["o"]), _unb64(item.get("k")),
                                                 _unb64(item.get("v"))))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    # Only a crash mid-append leaves a bad line, and only as the last one.
                    log.warning("registry journal %s: ignoring unreadable line %d",
                                self.path, number)
        return records

    @property
    def last_offset(self) -> int:
        """The last journaled offset; -1 for an empty or missing journal."""
        if self._last is None:
            records = self.read()
            self._last = records[-1].offset if records else -1
        return self._last

    def append(self, records: Iterable[JournalRecord]) -> None:
        """Append the records past the last journaled offset, durably (fsync)."""
        last = self.last_offset
        fresh = [r for r in records if r.offset > last]
        if not fresh:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = b"".join(orjson.dumps({"o": r.offset, "k": _b64(r.key), "v": _b64(r.value)})
                        + b"\n" for r in fresh)
        with self.path.open("ab") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        self._last = fresh[-1].offset

    def reset(self) -> None:
        """Forget every record (before a restore journals them again at new offsets)."""
        self.path.unlink(missing_ok=True)
        self._last = -1

    def check_restorable(self, topic: str, highwater: int) -> None:
        """Refuse a log ``topic``[0] that is not empty but shorter than the journal."""
        if highwater > 0:
            raise BrokerError(
                f"registry log {topic}[0] ends at @{highwater}, but this worker applied it "
                f"up to @{self.last_offset} (journal {self.path}): the broker lost part of "
                "the log or the topic was recreated. Refusing to start, so that no schema id "
                "is given to another schema. Delete the topic to restore it from the journal "
                f"at the next start, or delete {self.path} to accept the log as it is.")

    async def restore(self, producer: Producer, topic: str, bound: float) -> None:
        """Write every journaled record back into the empty log ``topic``[0], ids and
        versions unchanged."""
        records = self.read()
        log.warning("registry log %s[0] is empty but journal %s holds %d record(s): "
                    "restoring them, ids and versions unchanged", topic, self.path,
                    len(records))
        self.reset()  # journaled again, at their new offsets, as they are read back
        sends = [await producer.send(topic, r.value, key=r.key, partition=0) for r in records]
        try:
            await asyncio.wait_for(asyncio.gather(*sends), bound)
        except (KafkaError, TimeoutError) as exc:
            raise BrokerError(f"could not restore registry log {topic}: {exc!r}; the journal "
                              "is kept in memory only, restart to retry before anything else "
                              "is registered") from exc
