"""Every name onepipe derives from a registered topic or from the app id, in one place.

Other tools are written against these names (a sink connector reading ``<topic>.unique``,
a dashboard on ``<app_id>-dedup``'s lag), so they are contracts: change one here and
every agent, view and test follows.

Per registered topic ``<t>``:

- ``<t>-value``: the registry subject of its value schemas (Confluent's TopicNameStrategy,
  what every Confluent serializer looks up).
- ``<t>.unique``: the dedup agent's output, one message per new winner of a key
  (compacted); the changelog of its tables and the input of the checksum tables and sinks.
- ``<t>.repartition``: records a producer sent to the wrong partition for their key,
  forwarded by the dedup agent to the partition that owns the key.
- ``<t>.checksums``: the published checksum table (compacted, one partition).
- ``<t>.dlq``: rows an online sink's database refused, with the sink and the reason.

Per worker application ``<app_id>`` (consumer groups and internal topics):

- groups ``<app_id>-archive``, ``<app_id>-dedup``, ``<app_id>-checksums`` (the batch
  agents), ``<app_id>-compact`` (the compaction worker pool) and
  ``<app_id>-sink-<t>-<sink>`` (one per online sink: its own position);
- topics ``<app_id>-compact-tasks`` and ``<app_id>-compact-results`` (the pool's work);
- topics ``<app_id>-<agent>-changelog``: the table state of a developer's agent (compacted,
  one partition per input partition), the agent name mapped to Kafka-legal characters
  (:func:`kafka_safe`).

Kafka allows dots, so a registered topic could itself be named like a derived one
(``a.unique``) and would then share its name with ``a``'s output. Nothing refuses such a
name yet.

Subjects are names too: Confluent takes nearly any string, but a subject reaches URLs,
log keys, file names of exports and people's terminals, so :func:`check_subject` refuses
what could only be a mistake or an attack there (control characters, path separators).
"""

from __future__ import annotations

import re

from onepipe.schemas.errors import InvalidSubjectError

__all__ = ["CHECKSUMS_SUFFIX", "DLQ_SUFFIX", "MAX_SUBJECT_LENGTH", "REPARTITION_SUFFIX",
           "UNIQUE_SUFFIX", "VALUE_SUFFIX", "agent_group",
           "archive_group", "changelog_topic", "check_subject",
           "checksums_group", "checksums_topic", "compact_group", "compact_results_topic",
           "compact_tasks_topic", "dedup_group", "dlq_topic", "kafka_safe", "repartition_topic",
           "sink_group", "source_of_repartition", "source_of_unique", "source_of_value_subject",
           "unique_topic", "value_subject"]

VALUE_SUFFIX = "-value"
UNIQUE_SUFFIX = ".unique"
REPARTITION_SUFFIX = ".repartition"
CHECKSUMS_SUFFIX = ".checksums"
DLQ_SUFFIX = ".dlq"


#: Longest subject accepted: a topic's 249 characters and ``-value``, with room.
MAX_SUBJECT_LENGTH = 255


def value_subject(topic: str) -> str:
    """``<topic>-value``: the subject of ``topic``'s value schemas."""
    return topic + VALUE_SUFFIX


def source_of_value_subject(subject: str) -> str | None:
    """``<topic>`` of ``<topic>-value``; None for any other subject."""
    return subject.removesuffix(VALUE_SUFFIX) if subject.endswith(VALUE_SUFFIX) else None


def check_subject(subject: str) -> str:
    """``subject`` if a registry may create it; :class:`InvalidSubjectError` (422) else."""
    bad = next((c for c in subject if c < " " or "\x7f" <= c <= "\x9f"
                or "\ud800" <= c <= "\udfff" or c in "/\\"), None)
    if not subject or len(subject) > MAX_SUBJECT_LENGTH or bad is not None \
            or subject in (".", ".."):
        why = ("is empty" if not subject else
               f"is {len(subject)} characters long" if len(subject) > MAX_SUBJECT_LENGTH else
               f"holds the character {bad!r}" if bad is not None else "is a path step")
        shown = subject if len(subject) <= 60 else subject[:57] + "..."
        raise InvalidSubjectError(
            f"subject {shown!r} {why}: a subject is 1 to {MAX_SUBJECT_LENGTH} characters "
            "without control characters, '/' or '\\', and not '.' or '..'")
    return subject


def unique_topic(topic: str) -> str:
    """``<topic>.unique``: the winning version of every key, in order of change."""
    return topic + UNIQUE_SUFFIX


def repartition_topic(topic: str) -> str:
    """``<topic>.repartition``: records re-routed to the partition owning their key."""
    return topic + REPARTITION_SUFFIX


def checksums_topic(topic: str) -> str:
    """``<topic>.checksums``: the published per-day figures of ``topic``."""
    return topic + CHECKSUMS_SUFFIX


def dlq_topic(topic: str) -> str:
    """``<topic>.dlq``: the rows of ``topic`` an online sink's database refused."""
    return topic + DLQ_SUFFIX


def source_of_unique(name: str) -> str | None:
    """``<topic>`` of ``<topic>.unique``; None for any other name."""
    return name.removesuffix(UNIQUE_SUFFIX) if name.endswith(UNIQUE_SUFFIX) else None


def source_of_repartition(name: str) -> str | None:
    """``<topic>`` of ``<topic>.repartition``; None for any other name."""
    return name.removesuffix(REPARTITION_SUFFIX) if name.endswith(REPARTITION_SUFFIX) else None


def archive_group(app_id: str) -> str:
    """The archive agent's consumer group."""
    return f"{app_id}-archive"


def dedup_group(app_id: str) -> str:
    """The dedup agent's consumer group."""
    return f"{app_id}-dedup"


def checksums_group(app_id: str) -> str:
    """The checksum agent's consumer group."""
    return f"{app_id}-checksums"


def sink_group(app_id: str, topic: str, sink: str) -> str:
    """The consumer group of one online sink of ``topic``."""
    return f"{app_id}-sink-{topic}-{sink}"


def agent_group(app_id: str, agent: str) -> str:
    """The consumer group of one developer agent (``agent``: its Kafka-safe name)."""
    return f"{app_id}-agent-{agent}"


def compact_group(app_id: str) -> str:
    """The compaction worker pool's consumer group (it reads the task topic)."""
    return f"{app_id}-compact"


def compact_tasks_topic(app_id: str) -> str:
    """Day tasks of compaction runs, for any worker of the pool."""
    return f"{app_id}-compact-tasks"


def compact_results_topic(app_id: str) -> str:
    """Results of day tasks, read by the compactor that sent them."""
    return f"{app_id}-compact-results"


#: What Kafka refuses in a topic name (legal: ASCII letters, digits, ``.``, ``_``, ``-``).
_NOT_KAFKA = re.compile(r"[^a-zA-Z0-9._-]")


def kafka_safe(name: str) -> str:
    """``name`` with every character Kafka refuses in a topic name replaced by ``_``
    (an agent's default name ``acme.rollups.<locals>.f`` becomes ``acme.rollups._locals_.f``).
    """
    return _NOT_KAFKA.sub("_", name)


def changelog_topic(app_id: str, agent: str) -> str:
    """``<app_id>-<agent>-changelog``: the changelog of ``agent``'s tables (compacted,
    partition ``p`` holding the state of input partition ``p``)."""
    return f"{app_id}-{kafka_safe(agent)}-changelog"
