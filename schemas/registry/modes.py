"""Registry modes: whether a subject (or the whole registry) takes writes.

Confluent's modes are READWRITE, READONLY, READONLY_OVERRIDE, IMPORT (and FORWARD, for
its cluster links). onepipe keeps the three it can honour:

- ``READWRITE`` (the default): registrations, deletes and level changes are allowed;
- ``READONLY``: registrations, deletes and compatibility-level changes of the subject (or,
  set globally, of every subject without a mode of its own) are refused with 42205; reads,
  lookups, compatibility checks and produce are not affected. Modes themselves can always
  be changed, or nobody could leave READONLY;
- ``READONLY_OVERRIDE``: deprecated in Confluent, which treats it exactly as READONLY;
  so does onepipe.

``IMPORT`` is refused with 42204: it means registering schemas under ids and versions the
caller chooses, which onepipe does not offer (ids are handed out by the log so that no
id is ever given to two schemas), so accepting the mode would be a promise it cannot keep.
"""

from __future__ import annotations

from enum import StrEnum

from onepipe.schemas.errors import InvalidModeError


class Mode(StrEnum):
    """A registry mode onepipe supports."""

    READWRITE = "READWRITE"
    READONLY = "READONLY"
    READONLY_OVERRIDE = "READONLY_OVERRIDE"

    @property
    def read_only(self) -> bool:
        return self is not Mode.READWRITE

    @classmethod
    def parse(cls, raw: object) -> Mode:
        """A mode from a request or a log record; 42204 for anything else."""
        if isinstance(raw, str):
            try:
                return cls(raw.strip().upper())
            except ValueError:
                pass
        if isinstance(raw, str) and raw.strip().upper() in ("IMPORT", "FORWARD"):
            raise InvalidModeError(
                f"mode {raw!r} is not supported: it needs registration under ids and "
                "versions the caller chooses, which onepipe does not offer (ids come from "
                "the registry log, so none is ever given to two schemas); use one of "
                f"{', '.join(m.value for m in cls)}")
        raise InvalidModeError(
            f"invalid mode {raw!r}; use one of {', '.join(m.value for m in cls)}")


#: The global mode when none was set.
DEFAULT_MODE = Mode.READWRITE
