"""Derived names are contracts other tools are written against: pinned here, literally.

Everything else (agents, views, tests) builds them through onepipe.schemas.topic_names, so
changing one is a change of this test, on purpose.
"""

from __future__ import annotations

from onepipe.schemas import topic_names as names


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
