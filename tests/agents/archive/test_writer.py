"""The archive writer's order per partition, against the real broker's registry and a real
local lake whose writes the test can hold.

A partition's files must land in offset order (the archive resumes after the highest offset
in the lake: a later file before an earlier one would leave a hole a crash makes
permanent), but its later buffers are encoded while its earlier files are still being
written, so the encoder never waits for a lake write.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from onepipe.agents.archive import writer as writer_module
from onepipe.agents.archive.columns import Chunk, pack
from onepipe.agents.archive.encode import Segment
from onepipe.agents.archive.writer import SegmentWriter
from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.codec import encode
from onepipe.schemas.errors import LakeError
from onepipe.schemas.topic_names import value_subject
from onepipe.sinks.lake import LakeStore, open_lake
from onepipe.sinks.lake.inventory import raw_inventory
from onepipe.sinks.lake.raw_layout import parse_raw_path
from onepipe.tables.registry_store import RegistryStore
from tests.fixtures.services import kafka_for, unique, wait_for

SCHEMA = parse_schema({"type": "record", "name": "W", "fields": [
    {"name": "id", "type": "string"}, {"name": "n", "type": "long"}]})


class Refused(LakeError):
    """A write the lake refuses for good (not retried)."""

    retriable = False


class HeldLake:
    """The real local lake, whose first write waits for :attr:`release` (or fails)."""

    def __init__(self, lake: LakeStore, *, fail_first: bool = False) -> None:
        self.lake = lake
        self.fail_first = fail_first
        self.release = asyncio.Event()
        #: Paths whose write began, and those that are durable, in order.
        self.started: list[str] = []
        self.written: list[str] = []

    async def put(self, path: str, data: bytes) -> None:
        self.started.append(path)
        if len(self.started) == 1:
            await self.release.wait()
            if self.fail_first:
                raise Refused(f"refused {path}")
        await self.lake.put(path, data)
        self.written.append(path)


@pytest.fixture
async def registry(broker: str) -> AsyncIterator[tuple[RegistryStore, str, int]]:
    """A registry on the real broker with one topic's value schema: (store, topic, id)."""
    topic = unique("writer")
    async with RegistryStore(kafka_for(broker), unique("_registry"), fetch_wait_ms=10,
                             write_timeout=20.0) as store:
        version = await store.register(value_subject(topic), SCHEMA)
        yield store, topic, version.schema_id


def _chunk(tp: TopicPartition, schema_id: int, first: int, count: int) -> Chunk:
    return pack(tp, [
        ConsumerRecord(tp.topic, tp.partition, offset, 1_764_151_200_000 + offset, 0,
                       b"k", encode(schema_id, SCHEMA, {"id": f"r{offset}", "n": offset}),
                       None, 1, 0, ())
        for offset in range(first, first + count)])


async def test_later_buffers_encode_while_an_earlier_file_is_written_and_land_after_it(
        registry: tuple[RegistryStore, str, int], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    store, topic, schema_id = registry
    tp = TopicPartition(topic, 0)
    encoded: list[int] = []
    encode_segment = writer_module.encode_segment

    def counted(segment: Any) -> tuple[bytes, int]:
        result = encode_segment(segment)
        encoded.append(segment.chunks[0].first_offset())
        return result

    # encoders=0 encodes in a thread of this process, through the module's function.
    monkeypatch.setattr(writer_module, "encode_segment", counted)
    durable: list[tuple[int, int]] = []

    async def on_written(_: TopicPartition, next_offset: int, records: int, *__: int) -> None:
        durable.append((next_offset, records))

    async with open_lake((tmp_path / "lake").as_uri()) as local:
        lake = HeldLake(local)
        writer = SegmentWriter(cast(LakeStore, lake), store, on_written, encoders=0)
        await writer.start()
        try:
            for first in (0, 10, 20):
                await writer.wait_capacity()
                writer.submit(tp, [_chunk(tp, schema_id, first, 10)], "test")
            # The first file's write is held: the later buffers are encoded meanwhile...
            await wait_for(lambda: sorted(encoded) == [0, 10, 20],
                           what="every buffer encoded while the first write is held")
            # ...but not written: nothing may land before the first file.
            assert len(lake.started) == 1 and lake.written == []
            assert durable == []
            lake.release.set()
            await writer.drain()
        finally:
            lake.release.set()  # a failed assertion must not leave the stop waiting
            await writer.stop()
        assert [(f.first, f.last) for f in map(parse_raw_path, lake.written)
                if f is not None] == [(0, 9), (10, 19), (20, 29)]
        assert durable == [(10, 10), (20, 10), (30, 10)]
        inventory = await raw_inventory(local, topic)
        assert inventory.records == 30 and inventory.gaps == {}


async def test_a_failed_write_stops_every_later_write_of_its_partition(
        registry: tuple[RegistryStore, str, int], tmp_path: Path) -> None:
    store, topic, schema_id = registry
    tp = TopicPartition(topic, 0)
    durable: list[int] = []

    async def on_written(_: TopicPartition, next_offset: int, *__: int) -> None:
        durable.append(next_offset)

    async with open_lake((tmp_path / "lake").as_uri()) as local:
        lake = HeldLake(local, fail_first=True)
        writer = SegmentWriter(cast(LakeStore, lake), store, on_written, encoders=0)
        await writer.start()
        try:
            for first in (0, 10):
                writer.submit(tp, [_chunk(tp, schema_id, first, 10)], "test")
            lake.release.set()
            with pytest.raises(Refused):
                await writer.drain()
            with pytest.raises(Refused):
                writer.raise_failure()  # the agent stops rather than archive past the hole
        finally:
            lake.release.set()
            await writer.reset()
            with contextlib.suppress(LakeError):  # not hiding a failed assertion above
                await writer.stop()
        # The second buffer was never written past the failed first.
        assert len(lake.started) == 1 and lake.written == []
        assert durable == []
        assert (await raw_inventory(local, topic)).records == 0


async def test_a_write_that_fails_early_still_ends_after_the_one_before(
        registry: tuple[RegistryStore, str, int], tmp_path: Path) -> None:
    """A buffer whose encoding fails while its partition's earlier file is still being
    written must not end first: waiting for a partition's last write (a revoke's drain,
    the stop) would return while a file is still landing, and the partition's next owner
    would archive those offsets again."""
    store, topic, schema_id = registry
    tp = TopicPartition(topic, 0)

    async def on_written(*_: Any) -> None:
        pass

    async with open_lake((tmp_path / "lake").as_uri()) as local:
        lake = HeldLake(local)
        writer = SegmentWriter(cast(LakeStore, lake), store, on_written, encoders=0)
        encode = writer._encode  # noqa: SLF001 - the fault is injected in the writer's step
        failed = asyncio.Event()

        async def failing(segment: Any) -> tuple[bytes, int]:
            if segment.chunks[0].first_offset() == 10:
                failed.set()
                raise ValueError("encoder failed")  # raised on the loop, in the task's step
            return await encode(segment)

        writer._encode = failing  # type: ignore[method-assign]  # noqa: SLF001
        await writer.start()
        try:
            writer.submit(tp, [_chunk(tp, schema_id, 0, 10)], "test")
            await wait_for(lambda: len(lake.started) == 1, what="the first write held")
            writer.submit(tp, [_chunk(tp, schema_id, 10, 10)], "test")
            last = writer._tails[tp]  # noqa: SLF001
            await failed.wait()
            # The failed write raised in the step that set the event: had it ended
            # already, it would be done now.
            assert not last.done()
            lake.release.set()
            with pytest.raises(ValueError, match="encoder failed"):
                await writer.drain()
            assert len(lake.written) == 1  # the earlier file landed before the drain ended
        finally:
            lake.release.set()
            await writer.reset()
            with contextlib.suppress(ValueError):
                await writer.stop()


class _Stalled(concurrent.futures.Executor):
    """An encoder pool whose encoder is busy elsewhere: a call is taken, never run."""

    def __init__(self) -> None:
        self.calls = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.calls += 1
        return concurrent.futures.Future()


class _Inline(concurrent.futures.Executor):
    """An encoder pool that answers every call at once (in this process)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_result(fn(*args, **kwargs))
        return future


async def test_a_memory_file_is_written_again_only_after_its_encoder_answered() -> None:
    """The hand-over's memory file is kept for the next segment once its encoder answered,
    and closed - never written again - when the writer stopped waiting for the encoder,
    which may still read it."""
    async def on_written(*_: Any) -> None:
        pass

    tp = TopicPartition("t", 0)
    segment = Segment([_chunk(tp, 1, 0, 10)], SCHEMA.text, {1: SCHEMA.text})
    writer = SegmentWriter(cast(LakeStore, None), cast(RegistryStore, None), on_written,
                           encoders=0)
    await writer.start()
    try:
        assert await writer._encode_shared(_Inline(), segment) is not None  # noqa: SLF001
        assert writer.kept_bytes > 0  # answered: kept for the next segment
        stalled = _Stalled()
        waiting = asyncio.create_task(writer._encode_shared(stalled, segment))  # noqa: SLF001
        await wait_for(lambda: stalled.calls == 1, what="the segment handed to the encoder")
        assert writer.kept_bytes == 0  # the kept file carries it
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert writer.kept_bytes == 0  # closed, not kept: the encoder may still read it
    finally:
        await writer.stop()
