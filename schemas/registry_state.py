"""The registry as a deterministic state machine over its log.

The registry's state is a function of one single-partition Kafka topic (the log): every
worker applies the same records in the same order and so holds the same subjects,
versions, ids, configs, modes and topic metadata. The log holds *decisions*, not requests:

``schema``    subject, version, id and schema text, checked for compatibility by the
              writer before it was appended;
``delete``    ``{"subject", "version": int | null, "permanent": bool}``: a soft delete
              (of one version, or with ``null`` of every live version of the subject) or
              a permanent delete of what was soft-deleted before, in Confluent's order;
``config``    a compatibility level for a subject (or the global one);
``mode``      ``{"subject": str | null, "mode": str | null}``: READWRITE, READONLY ...
              (onepipe.schemas.registry.modes) for a subject or globally; null removes;
``metadata``  a topic's catalog entry, parsed here once into a
              :class:`~onepipe.schemas.metadata.TopicMetadata`: every reader of the
              state gets the typed entry, never a dict to parse again.

Two workers may decide concurrently (both propose version 3, or both hand out id 7).
:meth:`RegistryState.apply` accepts a decision only if it is still consistent with what
came before it in the log (a schema's version is the next one, its id is the schema's id
or a fresh one; a delete finds what it deletes; nothing is written to a read-only
subject), so the first decision in log order wins on every worker, and the loser sees
its decision ignored and decides again against the new state. That is how ids stay
identical on every worker without a leader.

Invariants, whatever the log holds:

- a schema id names one schema forever. Deletes, soft or permanent, remove *versions*,
  never ids: re-registering a schema anywhere gives it its old id, and
  :meth:`RegistryState.schema_by_id` keeps answering for it. Records already in Kafka and
  in the lake carry only that id, and a record acknowledged once must stay decodable.
  This is a deliberate deviation from Confluent, whose ``GET /schemas/ids/{id}`` answers
  40403 once every version holding the id was permanently deleted;
- a registered topic's value subject (``<topic>-value``) keeps at least one live
  version: producing needs its latest schema, and there is no topic delete to retire it.

Record keys are unique per decision (``<type>/<subject or topic>/.../<random>``) so that
log compaction never removes a record: a later decision's fate depends on earlier ones
(a schema decision is refused when a level, mode or delete of its subject came after its
basis; a delete is refused while the subject belongs to a registered topic), so dropping
an older config or metadata record in favour of a newer one with the same key would
change what replay accepts. Records written before modes existed used ``config/<subject>``
and ``metadata/<topic>`` keys; replay reads them the same way. Producer retries must not
duplicate records for this to hold on a compacting broker: the worker's producer is
idempotent on Apache Kafka (ONEPIPE_IDEMPOTENT_PRODUCER).

A schema decision also carries its ``basis``, the log offset its writer had applied when
it checked compatibility. If the subject's (or the global) level or mode changed after
that offset, or one of its versions was deleted, the decision was checked against a state
that no longer holds, and ``apply`` refuses it like a lost race; the writer decides again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from onepipe.schemas.avro_schema import AvroSchema, parse_schema
from onepipe.schemas.codec import MAX_SCHEMA_ID
from onepipe.schemas.compatibility import Compatibility
from onepipe.schemas.errors import (
    InvalidCompatibilityError,
    InvalidModeError,
    MetadataError,
    OperationNotPermittedError,
    SchemaError,
)
from onepipe.schemas.metadata import metadata_from_dict
from onepipe.schemas.registry.modes import Mode
from onepipe.schemas.registry.types import Decision, SchemaVersion, SubjectHistory
from onepipe.schemas.registry.view import (
    SCHEMA_NOT_FOUND,
    SUBJECT_CONFIG_NOT_FOUND,
    SUBJECT_MODE_NOT_FOUND,
    SUBJECT_NOT_FOUND,
    SUBJECT_NOT_SOFT_DELETED,
    SUBJECT_SOFT_DELETED,
    TOPIC_NOT_FOUND,
    VERSION_NOT_FOUND,
    VERSION_NOT_SOFT_DELETED,
    VERSION_SOFT_DELETED,
    RegistryView,
    parse_version,
)
from onepipe.schemas.schema_limits import REPLAY_LIMITS

__all__ = [
    "SCHEMA_NOT_FOUND", "SUBJECT_CONFIG_NOT_FOUND", "SUBJECT_MODE_NOT_FOUND",
    "SUBJECT_NOT_FOUND", "SUBJECT_NOT_SOFT_DELETED", "SUBJECT_SOFT_DELETED",
    "TOPIC_NOT_FOUND", "VERSION_NOT_FOUND", "VERSION_NOT_SOFT_DELETED", "VERSION_SOFT_DELETED",
    "Decision", "RegistryState", "RegistryView", "SchemaVersion", "SubjectHistory",
    "parse_version",
]

log = logging.getLogger(__name__)
@dataclass(slots=True)
class RegistryState(RegistryView):
    """The registry as replayed from the log: :class:`RegistryView` plus how records
    change it."""

    # ------------------------------------------------------------------ apply
    def apply(self, offset: int, value: dict[str, Any]) -> bool:
        """Apply one log record; return whether it changed the state.

        Unknown or malformed records are skipped rather than fatal: a newer worker may
        write record types this one does not know, and replay must not stop on them.
        """
        self.applied_offset = offset
        try:
            changed = self._apply(value)
        except Exception:  # noqa: BLE001 - one bad record must not stop every worker's start
            # A bug of this worker's on a record it should understand: it is skipped and
            # reported, as a malformed one is, rather than ending the replay (every
            # worker replays the log at every start: a raise here would be a crash loop).
            log.exception("registry log: skipping the record at offset %d, which this "
                          "worker failed to apply", offset)
            return False
        if changed:
            self.generation += 1
        return changed

    def _apply(self, value: dict[str, Any]) -> bool:
        kind = value.get("type")
        changed = False
        if kind == "schema":
            changed = self._apply_schema(value)
        elif kind == "delete":
            changed = self._apply_delete(value)
        elif kind == "config":
            changed = self._apply_config(value)
        elif kind == "mode":
            changed = self._apply_mode(value)
        elif kind == "metadata":
            topic = value.get("topic")
            meta = value.get("metadata")
            if isinstance(topic, str) and isinstance(meta, dict):
                changed = self._apply_metadata(topic, meta)
        return changed

    def _apply_schema(self, value: dict[str, Any]) -> bool:
        subject, version, schema_id, text = (
            value.get("subject"),
            value.get("version"),
            value.get("id"),
            value.get("schema"),
        )
        if not (isinstance(subject, str) and isinstance(version, int)
                and isinstance(schema_id, int) and isinstance(text, str)
                and not isinstance(version, bool) and not isinstance(schema_id, bool)):
            return False
        if not 1 <= schema_id <= MAX_SCHEMA_ID:
            return False  # no Confluent header can carry it (schemas.codec reads int32)
        try:
            schema = parse_schema(text, REPLAY_LIMITS)
        except SchemaError as exc:
            self._skip_unreadable(schema_id, subject, version, exc.message)
            return False
        history = self.histories.get(subject) or SubjectHistory()
        if version != history.next_version():
            return False  # another decision took this version first
        basis = value.get("basis")
        if isinstance(basis, int) and max(self.changed_at.get(subject, -1),
                                          self.changed_at.get(None, -1)) > basis:
            return False  # checked against a level, mode or versions that changed since
        if self.mode(subject).read_only:
            return False
        known = self.id_by_identity.get(schema.identity)
        if known is not None and known != schema_id:
            return False
        if known is None and (schema_id in self.schemas_by_id or schema_id in self.unreadable):
            return False  # the id went to another schema first
        if known is not None and known in self.subjects.get(subject, []):
            return False  # already a live version of this subject
        if known is None:
            self.schemas_by_id[schema_id] = schema
            self.id_by_identity[schema.identity] = schema_id
        # A soft-deleted version holding the same id is superseded for good, as in
        # Confluent (which tombstones it): the subject holds the schema once.
        for old in [v for v in history.deleted if history.ids[v] == schema_id]:
            del history.ids[old]
            history.deleted.discard(old)
        history.ids[version] = schema_id
        self.histories[subject] = history
        self._refresh(subject)
        return True

    def _skip_unreadable(self, schema_id: int, subject: str, version: int, reason: str) -> None:
        """A stored schema no worker parses safely (stored before the door's limits): the
        same on every worker, so their states stay equal; its id stays taken."""
        if schema_id not in self.schemas_by_id:
            self.unreadable.setdefault(schema_id, (self.applied_offset, reason))
        log.error("registry log: schema id %d (subject %r, version %d) at offset %d is "
                  "skipped, by every worker: %s. Its id stays reserved; records written "
                  "with it are undecodable. Register a fixed version of the subject.",
                  schema_id, subject, version, self.applied_offset, reason)

    def _apply_delete(self, value: dict[str, Any]) -> bool:
        subject, version, permanent = (value.get("subject"), value.get("version"),
                                       value.get("permanent"))
        if not (isinstance(subject, str) and isinstance(permanent, bool)
                and (version is None or (isinstance(version, int)
                                         and not isinstance(version, bool)))):
            return False
        history = self.histories.get(subject)
        if history is None or self.mode(subject).read_only:
            return False
        live = history.live()
        if version is None:
            if permanent == bool(live):
                return False  # soft: nothing live left; permanent: not soft-deleted first
            if not permanent:
                if self.topic_of(subject) is not None:
                    return False  # a registered topic's subject keeps a live version
                history.deleted.update(live)
            else:
                history.ids.clear()
        else:
            if version not in history.ids or permanent != (version in history.deleted):
                return False
            if permanent:
                del history.ids[version]
                history.deleted.discard(version)
            elif live == [version] and self.topic_of(subject) is not None:
                return False
            else:
                history.deleted.add(version)
        if not history.ids:
            # Gone for good: Confluent drops the subject's own level and mode with it.
            del self.histories[subject]
            self.configs.pop(subject, None)
            self.modes.pop(subject, None)
        self.changed_at[subject] = self.applied_offset
        self._refresh(subject)
        return True

    def _apply_metadata(self, topic: str, data: dict[str, Any]) -> bool:
        try:
            parsed = metadata_from_dict(topic, data)
        except MetadataError as exc:
            # Written by a newer worker with fields this one does not know, or by hand:
            # the topic keeps the entry it had, so nothing downstream sees half a change.
            log.warning("registry log: skipping metadata of topic %r that does not parse "
                        "here: %s", topic, exc.message)
            return False
        self.topics[topic] = parsed
        return True

    def _apply_config(self, value: dict[str, Any]) -> bool:
        subject = value.get("subject")
        if subject is not None and not isinstance(subject, str):
            return False
        if self.mode(subject).read_only:
            return False
        level = value.get("compatibility")
        if level is None:
            removed = self.configs.pop(subject, None) is not None
            if removed:
                self.changed_at[subject] = self.applied_offset
            return removed
        try:
            self.configs[subject] = Compatibility.parse(level)
        except InvalidCompatibilityError:
            return False  # written by a newer worker with a level this one does not know
        self.changed_at[subject] = self.applied_offset
        return True

    def _apply_mode(self, value: dict[str, Any]) -> bool:
        subject, raw = value.get("subject"), value.get("mode")
        if subject is not None and not isinstance(subject, str):
            return False
        if raw is None:
            if self.modes.pop(subject, None) is None:
                return False
        else:
            try:
                self.modes[subject] = Mode.parse(raw)
            except InvalidModeError:
                log.warning("registry log: skipping mode %r of %s this worker does not know",
                            raw, f"subject {subject!r}" if subject else "the registry")
                return False
        self.changed_at[subject] = self.applied_offset
        return True

    def _refresh(self, subject: str) -> None:
        """Rebuild ``subjects[subject]`` (the live ids) from its history."""
        history = self.histories.get(subject)
        live = [history.ids[v] for v in history.live()] if history else []
        if live:
            self.subjects[subject] = live
        else:
            self.subjects.pop(subject, None)
    # -------------------------------------------------------------- decisions
    def decide_register(
        self, subject: str, schema: AvroSchema, *, check: bool = True
    ) -> SchemaVersion | Decision:
        """What registering ``schema`` under ``subject`` means now.

        Returns the existing live version when the subject already holds the schema (no
        write needed), a :class:`Decision` to append otherwise; raises
        :class:`OperationNotPermittedError` when the subject is read-only or no schema id
        is left, and
        :class:`IncompatibleSchemaError` when its level forbids the schema.
        """
        existing = self.lookup(subject, schema)
        if existing is not None:
            return existing
        self.check_writable(subject)
        if check:
            self.check_register(subject, schema)
        schema_id = self.id_by_identity.get(schema.identity)
        if schema_id is None:
            schema_id = max(max(self.schemas_by_id, default=0),
                            max(self.unreadable, default=0)) + 1
            if schema_id > MAX_SCHEMA_ID:
                raise OperationNotPermittedError(
                    f"the registry has given out every schema id up to {MAX_SCHEMA_ID} "
                    "(a Confluent header holds an int32); a new schema has no id left")
        history = self.histories.get(subject) or SubjectHistory()
        version = history.next_version()
        return Decision(
            key=f"schema/{subject}/{version}/{schema.identity_hash}/{uuid.uuid4().hex[:16]}",
            value={
                "type": "schema",
                "subject": subject,
                "version": version,
                "id": schema_id,
                "schema": schema.text,
                "basis": self.applied_offset,
            },
        )
