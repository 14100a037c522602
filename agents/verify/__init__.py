"""``verify``: proof that every system holding a topic holds the same data, day by day.

Contract:

- **Systems compared** (each a :class:`VerifySource`, sources.py): the clean lake
  (clean.py: the Iceberg table at its head or a named snapshot), the ``<topic>.unique``
  stream (stream.py), the published checksum table (checksums.py, read
  from ``<topic>.checksums``), and any online sink. Each yields per-day figures - rows,
  distinct keys, exact sums, an order-independent row checksum (onepipe.schemas.figures) -
  computed by the same functions over the same Arrow types, so equal data gives equal
  figures everywhere.
- **The raw lake** is checked on its own terms (raw.py): contiguous offsets per
  partition (gaps and overlaps, with their days), and its record counts against the
  checksum table's raw counts.
- **Drill-down** (compare.py): when a day disagrees, key-hash buckets (256, then 65,536)
  narrow the difference to the keys that differ, listing at most ``limit``.
- **Read only**: verify changes nothing, reads Kafka "to the end" by the fetch high
  watermark, and never names a missing topic to the broker (it would be created). The
  report is plain data (:class:`VerifyReport`); ``ok`` only when everything agrees.
- Busy topics: each system is as of what it has consumed, so the newest day of a topic
  still being written may differ by lag alone; verify a quiet topic to conclude.
"""

from onepipe.agents.verify.clean import CleanLakeSource
from onepipe.agents.verify.compare import (
    DEFAULT_LIMIT,
    DayReport,
    DifferingKey,
    FigureCheck,
    VerifyReport,
    day_range,
    verify_registered,
    verify_topic,
)
from onepipe.agents.verify.sources import DayRange, VerifySource

__all__ = ["DEFAULT_LIMIT", "CleanLakeSource", "DayRange", "DayReport", "DifferingKey",
           "FigureCheck", "VerifyReport", "VerifySource", "day_range", "verify_registered",
           "verify_topic"]
