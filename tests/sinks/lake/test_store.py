"""The lake store contract, run the same way against a local folder and S3 (moto)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from onepipe.app.embedded import free_port
from onepipe.schemas.errors import ConfigError, LakeError, LakeObjectNotFound
from onepipe.sinks.lake import LakeObject, LakeStore, S3Options, open_lake
from onepipe.sinks.lake.local import LocalLake
from onepipe.sinks.lake.s3 import MULTIPART_THRESHOLD, S3Lake


@pytest.fixture(params=["local", "s3"])
def lake_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return (tmp_path / "lake").as_uri()
    url: str = request.getfixturevalue("s3_lake_url")
    return url


@pytest.fixture
async def store(lake_url: str, s3_options: S3Options) -> AsyncIterator[LakeStore]:
    async with open_lake(lake_url, s3_options) as lake:
        yield lake


async def put_all(store: LakeStore, paths: list[str]) -> None:
    await asyncio.gather(*(store.put(p, p.encode()) for p in paths))


# --- both stores ---------------------------------------------------------------------


async def test_put_get_round_trip(store: LakeStore) -> None:
    data = bytes(range(256)) * 40
    await store.put("raw/widgets/partition=0/0-9.parquet", data)
    assert await store.get("raw/widgets/partition=0/0-9.parquet") == data
    assert await store.exists("raw/widgets/partition=0/0-9.parquet")
    await store.put("empty", b"")
    assert await store.get("empty") == b""


async def test_put_overwrites(store: LakeStore) -> None:
    await store.put("clean/manifest.json", b"version 1, a longer body")
    await store.put("clean/manifest.json", b"v2")
    assert await store.get("clean/manifest.json") == b"v2"
    assert await store.list("clean/") == [LakeObject("clean/manifest.json", 2)]


async def test_missing_object(store: LakeStore) -> None:
    with pytest.raises(LakeObjectNotFound, match="nothing/here"):
        await store.get("nothing/here")
    with pytest.raises(LakeObjectNotFound):
        await store.get_range("nothing/here", 0, 4)
    with pytest.raises(LakeObjectNotFound):
        await store.get_range("nothing/here", 0, 0)
    assert not await store.exists("nothing/here")
    await store.put("a/b", b"x")
    assert not await store.exists("a")  # a 'directory' is not an object
    with pytest.raises(LakeObjectNotFound):
        await store.get("a")


async def test_get_range(store: LakeStore) -> None:
    data = b"PAR1" + bytes(range(100)) + b"\x08\x00\x00\x00PAR1"
    await store.put("f.parquet", data)
    assert await store.get_range("f.parquet", len(data) - 8, 8) == data[-8:]
    assert await store.get_range("f.parquet", 4, 10) == data[4:14]
    assert await store.get_range("f.parquet", len(data) - 3, 100) == data[-3:]
    assert await store.get_range("f.parquet", len(data), 5) == b""
    assert await store.get_range("f.parquet", len(data) + 50, 5) == b""
    assert await store.get_range("f.parquet", 3, 0) == b""
    with pytest.raises(LakeError, match="start >= 0"):
        await store.get_range("f.parquet", -8, 8)


async def test_list_is_recursive_sorted_and_prefix_filtered(store: LakeStore) -> None:
    assert await store.list("") == []
    paths = [
        "raw/widgets/partition=1/date=2026-11-26/hour=10/0-9.parquet",
        "raw/widgets/partition=0/date=2026-11-27/hour=00/10-19.parquet",
        "raw/widgets/partition=0/date=2026-11-26/hour=23/0-9.parquet",
        "raw/widgets2/partition=0/date=2026-11-26/hour=23/0-4.parquet",
        "raw/gadgets/partition=0/x.parquet",
        "clean/widgets/_manifest.json",
    ]
    await put_all(store, paths)
    everything = await store.list("")
    assert [o.path for o in everything] == sorted(paths)
    assert all(o.size == len(o.path) for o in everything)
    assert [o.path for o in await store.list("raw/widgets/")] == sorted(paths[:3])
    assert [o.path for o in await store.list("raw/widgets/partition=0/")] == sorted(paths[1:3])
    # A prefix is a string prefix, as on S3: it need not end at a '/'.
    assert [o.path for o in await store.list("raw/widgets")] == sorted(paths[:4])
    assert [o.path for o in await store.list("raw/widgets/partition=0/date=2026-11-2")] == (
        sorted(paths[1:3]))
    assert await store.list("raw/nothing/") == []
    assert await store.list("clean/widgets/_manifest.json") == [
        LakeObject("clean/widgets/_manifest.json", len(paths[5]))]


async def test_list_dirs(store: LakeStore) -> None:
    await put_all(store, [
        "raw/widgets/partition=0/date=2026-11-27/hour=00/0-9.parquet",
        "raw/widgets/partition=0/date=2026-11-26/hour=23/0-9.parquet",
        "raw/widgets/partition=0/date=2026-11-26/hour=22/0-9.parquet",
        "raw/widgets/partition=0/loose-file.txt",
        "raw/widgets/partition=1/date=2026-11-26/hour=01/0-9.parquet",
        "raw/gadgets/partition=0/date=2026-11-26/hour=01/0-9.parquet",
    ])
    assert await store.list_dirs("") == ["raw"]
    assert await store.list_dirs("raw/") == ["gadgets", "widgets"]
    assert await store.list_dirs("raw/widgets/") == ["partition=0", "partition=1"]
    assert await store.list_dirs("raw/widgets/partition=0/") == [
        "date=2026-11-26", "date=2026-11-27"]
    assert await store.list_dirs("raw/widgets/partition=0") == [  # '/' is implied
        "date=2026-11-26", "date=2026-11-27"]
    assert await store.list_dirs("raw/widgets/partition=0/date=2026-11-26/hour=23/") == []
    assert await store.list_dirs("missing/") == []
    # As on S3, a 'directory' disappears with its last object.
    await store.delete("raw/gadgets/partition=0/date=2026-11-26/hour=01/0-9.parquet")
    assert await store.list_dirs("raw/") == ["widgets"]


async def test_delete_is_idempotent(store: LakeStore) -> None:
    await store.put("raw/t/a", b"1")
    await store.put("raw/t/b", b"2")
    await store.delete("raw/t/a")
    await store.delete("raw/t/a")
    await store.delete("never/existed")
    assert not await store.exists("raw/t/a")
    assert await store.list("") == [LakeObject("raw/t/b", 1)]


async def test_put_if_absent_has_exactly_one_winner(store: LakeStore) -> None:
    contenders = [f"manifest by writer {i}".encode() for i in range(10)]
    won = await asyncio.gather(
        *(store.put_if_absent("clean/widgets/manifest-0001.json", data) for data in contenders)
    )
    assert won.count(True) == 1
    winner = contenders[won.index(True)]
    assert await store.get("clean/widgets/manifest-0001.json") == winner
    assert not await store.put_if_absent("clean/widgets/manifest-0001.json", b"late")
    assert await store.get("clean/widgets/manifest-0001.json") == winner
    assert await store.list("") == [LakeObject("clean/widgets/manifest-0001.json", len(winner))]


async def test_readers_never_see_a_partial_object(store: LakeStore) -> None:
    versions = [bytes([65 + i]) * (512 * 1024) for i in range(4)]
    await store.put("hot/object", versions[0])
    done = asyncio.Event()

    async def write() -> None:
        for i in range(1, 13):
            await store.put("hot/object", versions[i % len(versions)])
        done.set()

    async def read() -> int:
        reads = 0
        while not done.is_set() or reads == 0:
            assert await store.get("hot/object") in versions
            reads += 1
        return reads

    _, reads, _ = await asyncio.gather(write(), read(), read())
    assert reads > 0


BAD_PATHS = ["../escape", "raw/../../etc/passwd", "/abs/path", "a//b", "raw/.hidden", "",
             "dir/", "./x"]


async def test_path_validation(store: LakeStore) -> None:
    for bad in BAD_PATHS:
        calls: list[Callable[[str], Awaitable[object]]] = [
            lambda p: store.put(p, b"x"),
            lambda p: store.put_if_absent(p, b"x"),
            store.get,
            lambda p: store.get_range(p, 0, 1),
            store.exists,
            store.delete,
        ]
        for call in calls:
            with pytest.raises(LakeError) as info:
                await call(bad)
            assert repr(bad) in str(info.value)
            assert not isinstance(info.value, LakeObjectNotFound)
    for bad in ["../", "/raw/", "raw/../", "raw//"]:
        with pytest.raises(LakeError, match="prefix|path"):
            await store.list(bad)
        with pytest.raises(LakeError, match="prefix|path"):
            await store.list_dirs(bad)
    assert await store.list("") == []


async def test_close_twice_then_use_is_an_error(lake_url: str, s3_options: S3Options) -> None:
    lake = open_lake(lake_url, s3_options)
    await lake.put("x", b"1")
    await lake.close()
    await lake.close()
    with pytest.raises(LakeError, match="closed"):
        await lake.get("x")
    with pytest.raises(LakeError, match="closed"):
        await lake.put("x", b"2")
    with pytest.raises(LakeError, match="closed"):
        await lake.list("")
    with pytest.raises(LakeError, match="closed"):
        async with lake:
            pass


# --- one store -----------------------------------------------------------------------


async def test_local_crash_leftovers_are_invisible_and_removable(tmp_path: Path) -> None:
    async with open_lake((tmp_path / "lake").as_uri()) as lake:
        assert isinstance(lake, LocalLake)
        await lake.put("raw/t/partition=0/0-9.parquet", b"complete")
        folder = tmp_path / "lake" / "raw" / "t" / "partition=0"
        # What a writer killed between write and rename leaves behind.
        (folder / ".10-19.parquet.tmp-0123456789abcdef0123456789abcdef").write_bytes(b"half")
        (tmp_path / "lake" / "raw" / "u").mkdir()
        (tmp_path / "lake" / "raw" / "u" / ".0-9.parquet.tmp-feed").write_bytes(b"half")

        assert await lake.list("") == [LakeObject("raw/t/partition=0/0-9.parquet", 8)]
        assert await lake.list_dirs("raw/") == ["t"]
        assert await lake.remove_stale_temp_files("raw/t/") == 1
        assert await lake.remove_stale_temp_files("") == 1
        assert await lake.remove_stale_temp_files("") == 0
        assert sorted(p.name for p in folder.iterdir()) == ["0-9.parquet"]
        assert await lake.get("raw/t/partition=0/0-9.parquet") == b"complete"


async def test_local_writes_leave_no_temp_files(tmp_path: Path) -> None:
    async with open_lake((tmp_path / "lake").as_uri()) as lake:
        await lake.put("a/b", b"1")
        await lake.put("a/b", b"2")
        assert await lake.put_if_absent("a/c", b"3")
        assert not await lake.put_if_absent("a/c", b"4")
    assert sorted(p.name for p in (tmp_path / "lake" / "a").iterdir()) == ["b", "c"]


async def test_local_write_through_a_file_is_a_lake_error(tmp_path: Path) -> None:
    async with open_lake((tmp_path / "lake").as_uri()) as lake:
        await lake.put("a", b"file")
        with pytest.raises(LakeError, match="'a/b'") as info:
            await lake.put("a/b", b"x")
        assert not isinstance(info.value, LakeObjectNotFound)
        with pytest.raises(LakeObjectNotFound):
            await lake.get("a/b")


async def test_s3_unreachable_endpoint_names_it() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    options = S3Options(endpoint_url=endpoint, region="us-east-1",
                        access_key_id="testing", secret_access_key="testing")
    async with open_lake("s3://bucket/lake", options) as lake:
        with pytest.raises(LakeError, match=endpoint) as info:
            await lake.get("raw/x")
    assert not isinstance(info.value, LakeObjectNotFound)
    assert "s3://bucket/lake/raw/x" in str(info.value)
    assert info.value.retriable


async def test_s3_missing_bucket_says_so(s3_options: S3Options) -> None:
    async with open_lake("s3://no-such-bucket-for-onepipe/lake", s3_options) as lake:
        with pytest.raises(LakeError, match="does not exist"):
            await lake.put("x", b"1")


async def test_s3_multipart_put(s3_lake_url: str, s3_options: S3Options) -> None:
    size = 70 * 1024 * 1024
    assert size > MULTIPART_THRESHOLD
    data = os.urandom(1024) * (size // 1024)
    async with open_lake(s3_lake_url, s3_options) as lake:
        assert isinstance(lake, S3Lake)
        await lake.put("raw/big.parquet", data)
        assert await lake.list("") == [LakeObject("raw/big.parquet", size)]
        assert await lake.get_range("raw/big.parquet", size - 1024, 1024) == data[-1024:]
        assert await lake.get("raw/big.parquet") == data
        # The conditional form takes the multipart path as well and refuses to overwrite.
        assert not await lake.put_if_absent("raw/big.parquet", data)


def test_open_lake_picks_the_store(tmp_path: Path, s3_options: S3Options) -> None:
    local = open_lake((tmp_path / "l").as_uri())
    assert isinstance(local, LocalLake)
    assert isinstance(local, LakeStore)
    assert (tmp_path / "l").is_dir()
    s3 = open_lake("s3://bucket/some/prefix/", s3_options)
    assert isinstance(s3, S3Lake)
    assert (s3.bucket, s3.key_prefix) == ("bucket", "some/prefix/")
    assert open_lake("s3://bucket").key_prefix == ""  # type: ignore[attr-defined]
    secret = S3Options(access_key_id="AKIDEXAMPLE", secret_access_key="wJalrXUtnFEMI")
    assert "wJalrXUtnFEMI" not in repr(secret)  # the secret stays out of logs


@pytest.mark.parametrize("url", ["ftp://x", "lake/relative", "file://relative/path",
                                 "s3:///no-bucket", "s3://bucket/../up", ""])
def test_open_lake_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="got"):
        open_lake(url)


def test_s3_needs_both_keys_or_neither() -> None:
    with pytest.raises(ConfigError, match="both"):
        open_lake("s3://bucket/lake", S3Options(access_key_id="only-one"))
