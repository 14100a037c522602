"""The writer's side of deletes, levels and modes: check a request against the state and
turn it into a :class:`~onepipe.schemas.registry.types.Decision`, with Confluent's errors.

A decision is checked again by :meth:`RegistryState.apply` when it is read back from the
log (another worker may have changed the subject in between); these functions give the
caller the precise error first. Checks run in Confluent's order, so a request that is
wrong in two ways gets the error Confluent would give.
"""

from __future__ import annotations

import asyncio
import uuid

from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.compatibility import Compatibility, incompatibilities
from onepipe.schemas.errors import NotFoundError, OperationNotPermittedError, SchemaError
from onepipe.schemas.registry.modes import Mode
from onepipe.schemas.registry.types import Decision, SchemaVersion
from onepipe.schemas.registry.view import incompatible
from onepipe.schemas.registry_state import (
    SUBJECT_NOT_FOUND,
    SUBJECT_NOT_SOFT_DELETED,
    SUBJECT_SOFT_DELETED,
    VERSION_NOT_FOUND,
    VERSION_NOT_SOFT_DELETED,
    VERSION_SOFT_DELETED,
    RegistryState,
    parse_version,
)
from onepipe.schemas.topic_names import check_subject


def _key(kind: str, *parts: object) -> str:
    """Unique per decision, so compaction never drops one (registry_state docstring)."""
    return "/".join([kind, *(str(p) for p in parts), uuid.uuid4().hex[:16]])


def delete_subject(state: RegistryState, subject: str, *, permanent: bool
                   ) -> tuple[Decision, list[int]]:
    """``DELETE /subjects/{subject}[?permanent=true]``: the decision and the versions it
    deletes (soft: the live ones; permanent: every soft-deleted one)."""
    history = state.histories.get(subject)
    if history is None:
        raise NotFoundError(f"Subject '{subject}' not found.", SUBJECT_NOT_FOUND)
    live = history.live()
    if not permanent and not live:
        raise NotFoundError(
            f"Subject '{subject}' was soft deleted. Set permanent=true to delete permanently",
            SUBJECT_SOFT_DELETED)
    state.check_writable(subject)
    if permanent and live:
        raise NotFoundError(
            f"Subject '{subject}' was not deleted first before being permanently deleted: "
            f"versions {live} are live; DELETE /subjects/{subject} soft-deletes them first",
            SUBJECT_NOT_SOFT_DELETED)
    if not permanent:
        _keep_topic_version(state, subject, "delete every version of")
    decision = Decision(_key("delete", subject, "*"), {
        "type": "delete", "subject": subject, "version": None, "permanent": permanent})
    return decision, list(history.ids) if permanent else live


def delete_version(state: RegistryState, subject: str, raw_version: str | int, *,
                   permanent: bool) -> tuple[Decision, int]:
    """``DELETE /subjects/{subject}/versions/{version}[?permanent=true]``: the decision and
    the version number it deletes (``latest`` is the latest live version, as in Confluent)."""
    number = parse_version(raw_version)  # 42202 before anything else
    history = state.histories.get(subject)
    if history is None:
        raise NotFoundError(f"Subject '{subject}' not found.", SUBJECT_NOT_FOUND)
    live = history.live()
    if number == -1:
        number = live[-1] if live else 0
    if not permanent and number in history.deleted:
        raise NotFoundError(
            f"Subject '{subject}' Version {number} was soft deleted. Set permanent=true to "
            "delete permanently", VERSION_SOFT_DELETED)
    if number not in history.ids:
        raise NotFoundError(f"Version {raw_version} not found: subject {subject!r} has "
                            f"versions {list(history.ids)}", VERSION_NOT_FOUND)
    state.check_writable(subject)
    if permanent and number not in history.deleted:
        raise NotFoundError(
            f"Subject '{subject}' Version {number} was not deleted first before being "
            f"permanently deleted; DELETE /subjects/{subject}/versions/{number} soft-deletes "
            "it first", VERSION_NOT_SOFT_DELETED)
    if not permanent and live == [number]:
        _keep_topic_version(state, subject, f"delete version {number}, the last live one, of")
    decision = Decision(_key("delete", subject, number), {
        "type": "delete", "subject": subject, "version": number, "permanent": permanent})
    return decision, number


def _keep_topic_version(state: RegistryState, subject: str, what: str) -> None:
    topic = state.topic_of(subject)
    if topic is not None:
        raise OperationNotPermittedError(
            f"cannot {what} subject {subject!r}: it is the value subject of registered topic "
            f"{topic!r}, and producing to the topic needs a latest version. Register the "
            "replacement schema first and then delete the old version; the subject cannot "
            "be emptied while the topic is registered (onepipe has no topic delete yet)")


def set_config(state: RegistryState, subject: str | None, level: Compatibility | None
               ) -> Decision:
    """``PUT``/``DELETE /config[/{subject}]``; 42205 when the subject is read-only, 42208
    when a level would create a subject of a name no registry may hold."""
    if subject is not None and level is not None:
        check_subject(subject)
    state.check_writable(subject)
    return Decision(_key("config", subject or ""), {
        "type": "config", "subject": subject,
        "compatibility": level.value if level else None})


def set_mode(subject: str | None, mode: Mode | None) -> Decision:
    """``PUT``/``DELETE /mode[/{subject}]``: always allowed (it is how READONLY ends), but
    for a subject name no registry may hold (42208)."""
    if subject is not None and mode is not None:
        check_subject(subject)
    return Decision(_key("mode", subject or ""), {
        "type": "mode", "subject": subject, "mode": mode.value if mode else None})


def put_metadata(topic: str, metadata: dict[str, object]) -> Decision:
    """A topic's catalog entry."""
    return Decision(_key("metadata", topic), {
        "type": "metadata", "topic": topic, "metadata": metadata})


async def register_off_loop(state: RegistryState, subject: str, schema: AvroSchema,
                            bound: float) -> SchemaVersion | Decision:
    """:meth:`RegistryState.decide_register`, with Avro's compatibility check in a thread.

    The check is pure Python and costs the square of the fields (a 2,000-field schema
    checked against one version: ~0.25 s); on the event loop it held every request of
    the worker that long. Its inputs are taken on the loop (the state is only ever
    changed there), and if they changed while the thread ran (a version registered or
    deleted, a level set), the check is made again against what the log holds now, so
    the decision never rests on a stale check. A check longer than ``bound`` seconds is
    refused (422) rather than holding the registry's write lock.
    """
    check_subject(subject)
    while True:
        existing = state.lookup(subject, schema)
        if existing is not None:
            return existing
        state.check_writable(subject)
        level, older = state.compatibility(subject), state.live_schemas(subject)
        try:
            async with asyncio.timeout(bound):
                reasons = await asyncio.to_thread(incompatibilities, schema, older, level)
        except TimeoutError:
            raise SchemaError(
                f"checking the schema's compatibility with subject {subject!r} took longer "
                f"than {bound:g} s; make the schema smaller (fewer fields, narrower unions)"
            ) from None
        if (level, older) != (state.compatibility(subject), state.live_schemas(subject)):
            continue
        if reasons:
            raise incompatible(subject, level, reasons)
        return state.decide_register(subject, schema, check=False)
