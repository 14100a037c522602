"""Derived names are contracts other tools are written against: pinned here, literally.

Everything else (agents, views, tests) builds them through onepipe.schemas.topic_names, so
changing one is a change of this test, on purpose.
"""

from __future__ import annotations

import pytest

from onepipe.schemas import topic_names as names
from onepipe.schemas.errors import InvalidSubjectError
from onepipe.schemas.topic_names import check_subject, source_of_value_subject, value_subject


def test_per_topic_names() -> None:
    assert names.unique_topic("widgets") == "widgets.unique"
    assert names.repartition_topic("widgets") == "widgets.repartition"
    assert names.checksums_topic("widgets") == "widgets.checksums"
    assert names.dlq_topic("widgets") == "widgets.dlq"


def test_per_app_names() -> None:
    assert names.archive_group("onepipe") == "onepipe-archive"
    assert names.dedup_group("onepipe") == "onepipe-dedup"
    assert names.checksums_group("onepipe") == "onepipe-checksums"
    assert names.compact_group("onepipe") == "onepipe-compact"
    assert names.compact_tasks_topic("onepipe") == "onepipe-compact-tasks"
    assert names.compact_results_topic("onepipe") == "onepipe-compact-results"
    assert names.sink_group("onepipe", "widgets", "pg") == "onepipe-sink-widgets-pg"


def test_sources_read_back_only_from_their_own_suffix() -> None:
    assert names.source_of_unique("a.b.unique") == "a.b"
    assert names.source_of_unique("a.repartition") is None
    assert names.source_of_repartition("a.repartition") == "a"
    assert names.source_of_repartition("a.unique") is None
    assert names.source_of_unique("unique") is None


@pytest.mark.parametrize("subject", ["widgets-value", ":.ctx:orders-value", "a.b_c-d",
                                     "ünï-cödé", "x" * 255])
def test_subjects_a_registry_may_create(subject: str) -> None:
    assert check_subject(subject) == subject


@pytest.mark.parametrize(("subject", "why"), [
    ("", "is empty"), (".", "path step"), ("..", "path step"), ("../etc", "'/'"),
    ("a\\b", "'\\\\'"), ("a\x00b", "'\\x00'"), ("line\nbreak", "'\\n'"), ("del\x7f", "'\\x7f'"),
    ("c1\x85", "'\\x85'"), ("lone\ud800", "'\\ud800'"), ("x" * 256, "256 characters"),
])
def test_subjects_no_registry_should_hold(subject: str, why: str) -> None:
    with pytest.raises(InvalidSubjectError) as info:
        check_subject(subject)
    assert why in info.value.message
    assert (info.value.status, info.value.error_code) == (422, 42208)


def test_value_subjects_and_back() -> None:
    assert value_subject("widgets") == "widgets-value"
    assert source_of_value_subject("widgets-value") == "widgets"
    assert source_of_value_subject("widgets-key") is None
