"""The clean manifest: JSON round trip, the latest seq wins, one committer per seq."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from onepipe.schemas.errors import CompactionConflict, CompactionError
from onepipe.sinks.lake import LakeStore, S3Options, open_lake
from onepipe.sinks.lake.clean_layout import (
    clean_file_path,
    manifest_path,
    parse_clean_path,
    parse_manifest_path,
)
from onepipe.sinks.lake.clean_manifest import (
    DayVersion,
    Manifest,
    RetiredFile,
    commit,
    load_latest,
    manifest_from_json,
    manifest_to_json,
)

RUN = "0123456789abcdef0123456789abcdef"


def sample(seq: int = 3, topic: str = "widgets") -> Manifest:
    moment = datetime(2026, 11, 26, 10, 30, tzinfo=UTC)
    return Manifest(
        topic=topic, seq=seq, created_at=moment, run_id=RUN,
        days={
            "2026-11-25": DayVersion(2, (clean_file_path(topic, "2026-11-25", 2, RUN, 0),),
                                     10, 1234),
            "2026-11-26": DayVersion(seq, (clean_file_path(topic, "2026-11-26", seq, RUN, 0),
                                           clean_file_path(topic, "2026-11-26", seq, RUN, 1)),
                                     0, 99),
        },
        raw_merged={0: 100, 2: 7},
        retired=(RetiredFile(clean_file_path(topic, "2026-11-26", 1, RUN, 0), moment),),
    )


def test_json_round_trip_is_exact() -> None:
    manifest = sample()
    data = manifest_to_json(manifest)
    assert manifest_from_json(data) == manifest
    assert manifest_to_json(manifest_from_json(data)) == data
    assert manifest.rows == 10
    assert len(manifest.files()) == 4


@pytest.mark.parametrize("data", [
    b"not json", b"{}", b'{"format": 99}',
    manifest_to_json(sample()).replace(b'"2026-11-25"', b'"yesterday"'),
    manifest_to_json(sample()).replace(b'"rows": 10', b'"rows": -1'),
])
def test_malformed_manifest_is_a_compaction_error(data: bytes) -> None:
    with pytest.raises(CompactionError, match="where/it/was"):
        manifest_from_json(data, "where/it/was")


def test_layout_names_parse_back() -> None:
    path = clean_file_path("t.x", "2026-11-26", 12, RUN, 3)
    assert path == f"clean/t.x/date=2026-11-26/v12/{RUN}-00003.parquet"
    parsed = parse_clean_path(path)
    assert parsed is not None and (parsed.version, parsed.index, parsed.run_id) == (12, 3, RUN)
    assert parse_manifest_path(manifest_path("t.x", 42)) == 42
    assert parse_clean_path(manifest_path("t.x", 42)) is None
    assert parse_manifest_path("clean/t.x/_manifest/.tmp") is None


@pytest.fixture(params=["local", "s3"])
def lake_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return (tmp_path / "lake").as_uri()
    url: str = request.getfixturevalue("s3_lake_url")
    return url


@pytest.fixture
async def lake(lake_url: str, s3_options: S3Options) -> AsyncIterator[LakeStore]:
    async with open_lake(lake_url, s3_options) as store:
        yield store


async def test_empty_lake_is_seq_zero(lake: LakeStore) -> None:
    manifest = await load_latest(lake, "widgets")
    assert manifest.seq == 0 and manifest.days == {} and manifest.raw_merged == {}


async def test_latest_is_the_highest_seq(lake: LakeStore) -> None:
    for seq in (1, 2, 10):
        await commit(lake, sample(seq))
    latest = await load_latest(lake, "widgets")
    assert latest == sample(10)
    assert (await load_latest(lake, "other")).seq == 0


async def test_exactly_one_committer_per_seq(lake: LakeStore) -> None:
    contenders = [Manifest(topic="widgets", seq=1, run_id=f"{i:032x}") for i in range(8)]
    results = await asyncio.gather(*(commit(lake, m) for m in contenders),
                                   return_exceptions=True)
    winners = [m for m, r in zip(contenders, results, strict=True) if r is None]
    assert len(winners) == 1
    losers = [r for r in results if r is not None]
    assert all(isinstance(r, CompactionConflict) and r.retriable for r in losers)
    assert (await load_latest(lake, "widgets")).run_id == winners[0].run_id


async def test_commit_refuses_seq_zero(lake: LakeStore) -> None:
    with pytest.raises(CompactionError, match="seq >= 1"):
        await commit(lake, Manifest(topic="widgets"))


async def test_a_manifest_under_a_wrong_name_is_refused(lake: LakeStore) -> None:
    await lake.put(manifest_path("widgets", 5), manifest_to_json(sample(4)))
    with pytest.raises(CompactionError, match="copied or renamed"):
        await load_latest(lake, "widgets")
