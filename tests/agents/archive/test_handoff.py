"""A segment handed over through shared memory encodes to the same file as through the pipe."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from onepipe.agents.archive import handoff
from onepipe.agents.archive.columns import Buffer, pack
from onepipe.agents.archive.encode import Segment, encode_segment
from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.codec import encode

SCHEMA = {"type": "record", "name": "E", "fields": [
    {"name": "id", "type": "string"}, {"name": "n", "type": "long"}]}
TEXT = json.dumps(SCHEMA)
TP = TopicPartition("t", 1)

values = st.one_of(
    st.builds(lambda i, n: encode(1, parse_schema(SCHEMA), {"id": i, "n": n}),
              st.text(max_size=30), st.integers(-(2**63), 2**63 - 1)),
    st.none(), st.binary(max_size=12))  # tombstones and undecodable values too
rows = st.lists(st.tuples(st.one_of(st.none(), st.binary(max_size=8)), values,
                          st.lists(st.tuples(st.text(max_size=3), st.binary(max_size=3)),
                                   max_size=1)), min_size=1, max_size=25)


def _segment(batch: list[tuple[bytes | None, bytes | None, list[Any]]], fetch: int) -> Segment:
    records = [ConsumerRecord(TP.topic, TP.partition, 5 + i, 1_764_151_200_000 + i, 0, key,
                              value, None, 0, 0, tuple(headers))
               for i, (key, value, headers) in enumerate(batch)]
    return Segment([pack(TP, records[i:i + fetch]) for i in range(0, len(records), fetch)],
                   TEXT, {1: TEXT})


@contextmanager
def _shared(segment: Segment) -> Iterator[tuple[int, handoff.SharedSegment]]:
    """The segment in a memory file (its descriptor, the shared segment), closed after."""
    fd, shared = handoff.share(segment)
    try:
        yield fd, shared
    finally:
        os.close(fd)


def test_this_platform_hands_segments_over_in_memory() -> None:
    # CI runs on Linux: were the memory file unavailable, every test here would prove only
    # the pipe fallback, and the archive would pay its copies without a word.
    assert handoff.available()


@given(rows, st.integers(1, 6))
def test_shared_segments_encode_to_the_same_file(
        batch: list[tuple[bytes | None, bytes | None, list[Any]]], fetch: int) -> None:
    segment = _segment(batch, fetch)
    with _shared(segment) as (_, shared):
        assert handoff.encode_shared(shared) == encode_segment(segment)


def test_a_closed_or_reused_descriptor_is_not_read() -> None:
    segment = _segment([(b"k", encode(1, parse_schema(SCHEMA), {"id": "a", "n": 1}), [])], 1)
    fd, shared = handoff.share(segment)
    os.close(fd)
    assert handoff.encode_shared(shared) is None  # closed: nothing to open
    other = os.memfd_create("another-file")  # may well get the freed number itself
    try:
        if other != fd:
            os.dup2(other, fd)  # the number now names another file
        assert handoff.encode_shared(shared) is None
    finally:
        os.close(fd)
        if other != fd:
            os.close(other)


@given(rows, st.integers(1, 6))
def test_every_buffer_lies_aligned_and_reads_back_in_place(
        batch: list[tuple[bytes | None, bytes | None, list[Any]]], fetch: int) -> None:
    segment = _segment(batch, fetch)
    with _shared(segment) as (fd, shared):
        view = memoryview(os.pread(fd, os.fstat(fd).st_size, 0))
    for original, (shell, places) in zip(segment.chunks, shared.chunks, strict=True):
        assert all(p[0] % 8 == 0 for p in places if p is not None)  # Arrow's alignment
        located = handoff._located(shell, places, view)  # noqa: SLF001 - what the encoder reads
        assert isinstance(located.offsets, memoryview)
        assert (located.first_offset(), located.last_offset()) \
            == (original.first_offset(), original.last_offset())
        assert bytes(located.values[1]) == bytes(original.values[1])


@given(rows, rows, st.integers(1, 6))
def test_a_kept_file_written_again_encodes_its_new_segment_alone(
        first: list[tuple[bytes | None, bytes | None, list[Any]]],
        second: list[tuple[bytes | None, bytes | None, list[Any]]], fetch: int) -> None:
    files = handoff.MemoryFiles(handoff.KEEP_BYTES)
    try:
        fd, shared_first = handoff.share(_segment(first, fetch), files.take())
        files.give(fd)
        again = files.take()
        assert again == fd  # kept, and taken again
        segment = _segment(second, fetch)
        fd, shared = handoff.share(segment, again)
        try:
            assert fd == again and shared.identity == shared_first.identity  # the same file
            assert handoff.encode_shared(shared) == encode_segment(segment)
        finally:
            files.give(fd)
    finally:
        files.close()


def test_a_kept_file_takes_a_segment_of_many_writes_and_is_cut_to_it() -> None:
    # 300 one-record chunks: 2,400 buffers, three pwritev calls at three offsets, over a
    # larger file full of other bytes.
    schema = parse_schema(SCHEMA)
    records = [ConsumerRecord(TP.topic, TP.partition, i, 1_764_151_200_000 + i, 0,
                              f"k{i}".encode(), encode(1, schema, {"id": f"r{i}", "n": i}),
                              None, 0, 0, ()) for i in range(300)]
    segment = Segment([pack(TP, records[i:i + 1]) for i in range(300)], TEXT, {1: TEXT})
    fd = os.memfd_create("kept")
    try:
        os.pwrite(fd, b"\xff" * 1_000_000, 0)
        fd, shared = handoff.share(segment, fd)
        assert handoff.encode_shared(shared) == encode_segment(segment)
        assert os.fstat(fd).st_size < 1_000_000  # the stale tail went back to the kernel
    finally:
        os.close(fd)


def test_a_short_write_is_finished_at_its_offset() -> None:
    fd = os.memfd_create("short")
    try:
        batch: list[Buffer] = [b"abc", b"defgh", b"ij"]
        handoff._write_rest(fd, batch, 4, 10)  # noqa: SLF001 - "abcd" already written at 10
        assert os.pread(fd, 6, 14) == b"efghij"
        assert os.fstat(fd).st_size == 20
    finally:
        os.close(fd)


def _closed(fd: int, inode: int) -> bool:
    """Whether ``fd`` no longer names the file ``inode`` (closed, or its number reused)."""
    try:
        return os.fstat(fd).st_ino != inode
    except OSError:
        return True


def test_files_are_kept_up_to_the_byte_budget_and_closed_past_it() -> None:
    files = handoff.MemoryFiles(keep_bytes=3000)
    made: list[tuple[int, int]] = []
    try:
        for size in (1000, 2000, 1):  # the first two fill the budget exactly
            fd = os.memfd_create("kept")
            os.ftruncate(fd, size)
            made.append((fd, os.fstat(fd).st_ino))
            files.give(fd)
        assert files.held_bytes == 3000
        assert _closed(*made[2])  # past the budget: closed, not kept
        assert {files.take(), files.take()} == {made[0][0], made[1][0]}
        assert files.take() is None  # none left: a new file is made
        for fd, _ in made[:2]:
            files.give(fd)
        files.close()
        assert all(_closed(*m) for m in made)
        fd = os.memfd_create("late")
        inode = os.fstat(fd).st_ino
        files.give(fd)  # given back after the close: closed too
        assert _closed(fd, inode)
        files.close()  # harmless twice
    finally:
        for fd, inode in made:
            if not _closed(fd, inode):
                os.close(fd)
