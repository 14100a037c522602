"""A segment handed to an encoder process through shared memory instead of a pipe.

Contract: :func:`share` writes a segment's chunk bytes into an anonymous memory file
(``memfd_create``) and returns that file with a :class:`SharedSegment` naming where each
buffer lies; :func:`encode_shared`, in the encoder, maps the file and encodes the very same
records as onepipe.agents.archive.encode.encode_segment would (the same bytes out). The
caller closes the file once the encoder answered; nothing outlives both processes (the
file has no name, so a crash leaks nothing).

Why: through the pool's pipe a segment was copied four times in user space (pickled by the
agent; read out of the pipe in pieces and gathered, then unpickled by the encoder), plus
the pipe's two kernel copies, each into memory fresh from the kernel (a page fault per 4 KiB,
~1-2 µs each on this VM). Here the agent's kernel writes it once into the file and the
encoder reads it where it lies (bench/archive.py, with the chunked columns of
onepipe.agents.archive.columns: the encoders' page faults at 2 KB 0.54-0.89 -> 0.23-0.53 a
record).

Memory: a file lives from the segment's hand-over until its encoder answered (at most the
writer's ``max_in_flight`` of them); it is shared memory, so it shows in the encoder's RSS
while mapped, not in the agent's. The agent's memory bound counts those bytes as in flight
either way.

Linux only (``os.memfd_create`` and ``/proc/<pid>/fd``): :func:`available` says whether the
agent may use it, and an encoder that cannot open the file answers None, after which the
writer goes back to the pipe.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, replace
from pathlib import Path

from onepipe.agents.archive.columns import Binary, Buffer, Chunk
from onepipe.agents.archive.encode import Segment, encode_segment

__all__ = ["SharedSegment", "available", "encode_shared", "share"]

#: Most buffers one ``writev`` takes (Linux's IOV_MAX).
_IOV_MAX = 1024


#: Where one buffer lies in the file: (start, length); None for an absent buffer.
Place = tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class SharedSegment:
    """A :class:`~onepipe.agents.archive.encode.Segment` whose chunk bytes are in a file."""

    #: The agent's process id and its descriptor of the file (opened via ``/proc``).
    pid: int
    fd: int
    #: The file's (device, inode): a descriptor closed and reused meanwhile (the agent
    #: gave up waiting) names another file, which is then not read.
    identity: tuple[int, int]
    #: Each chunk without its bytes (empty), and where its eight buffers lie: offsets,
    #: timestamps, then the keys' and the values' (offsets, data, validity).
    chunks: list[tuple[Chunk, tuple[Place, ...]]]
    reader: str | None
    writers: dict[int, str]


def available() -> bool:
    """Whether this platform has the memory files and ``/proc`` the handoff needs."""
    return hasattr(os, "memfd_create") and Path(f"/proc/{os.getpid()}/fd").is_dir()


def share(segment: Segment) -> tuple[int, SharedSegment]:
    """Write the segment's chunk bytes into a new memory file: (its descriptor, the
    segment naming them). Blocking (a copy of the segment): run it in a thread."""
    fd = os.memfd_create("onepipe-archive-segment", os.MFD_CLOEXEC)
    try:
        pieces: list[Buffer] = []
        chunks = []
        end = 0
        for chunk in segment.chunks:
            shell, places, end = _place(chunk, pieces, end)
            chunks.append((shell, places))
        for i in range(0, len(pieces), _IOV_MAX):
            batch = pieces[i:i + _IOV_MAX]
            written = os.writev(fd, batch)
            if written != sum(map(len, batch)):  # a short write: finish it piece by piece
                _write_rest(fd, batch, written)
    except BaseException:
        os.close(fd)
        raise
    stat = os.fstat(fd)
    return fd, SharedSegment(os.getpid(), fd, (stat.st_dev, stat.st_ino), chunks,
                             segment.reader, segment.writers)


def encode_shared(shared: SharedSegment) -> tuple[bytes, int] | None:
    """encode_segment of a shared segment, read in place from the agent's memory file;
    None when the file cannot be opened here (the caller sends the segment another way)."""
    try:
        fd = os.open(f"/proc/{shared.pid}/fd/{shared.fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        stat = os.fstat(fd)
        if (stat.st_dev, stat.st_ino) != shared.identity:
            return None
        view = memoryview(mmap.mmap(fd, stat.st_size, prot=mmap.PROT_READ)) \
            if stat.st_size else memoryview(b"")
    except OSError:  # no mapping to be had (memory, map count): the pipe still works
        return None
    finally:
        os.close(fd)  # the mapping stays until the last column over it is gone
    chunks = [_located(shell, places, view) for shell, places in shared.chunks]
    return encode_segment(Segment(chunks, shared.reader, shared.writers))


_EMPTY: Binary = (b"", b"", None)
#: Alignment of every buffer in the file, and the padding that makes it.
_ALIGN = 8
_PADDING = bytes(_ALIGN)


def _place(chunk: Chunk, pieces: list[Buffer], start: int
           ) -> tuple[Chunk, tuple[Place, ...], int]:
    """The chunk without its bytes, where they lie (appended to ``pieces`` from file
    offset ``start``), and the file offset after them.

    Every buffer starts 8-byte aligned (padding between them), as Arrow's format asks of
    the buffers it reads in place: int64 offsets after odd-length value bytes would not
    be otherwise.
    """
    places: list[Place] = []
    for buffer in (chunk.offsets, chunk.timestamps, *chunk.keys, *chunk.values):
        if buffer is None:
            places.append(None)
            continue
        if start % _ALIGN:
            pad = _ALIGN - start % _ALIGN
            pieces.append(_PADDING[:pad])
            start += pad
        places.append((start, len(buffer)))
        pieces.append(buffer)
        start += len(buffer)
    shell = replace(chunk, offsets=b"", timestamps=b"", keys=_EMPTY, values=_EMPTY)
    return shell, tuple(places), start


def _located(shell: Chunk, places: tuple[Place, ...], view: memoryview) -> Chunk:
    """The chunk with its bytes: views of the mapped file, no copy."""
    at = [view[p[0]:p[0] + p[1]] if p is not None else None for p in places]
    offsets, timestamps, k_offsets, k_data, k_valid, v_offsets, v_data, v_valid = at
    assert offsets is not None and timestamps is not None  # noqa: S101 - always placed
    assert k_offsets is not None and k_data is not None  # noqa: S101
    assert v_offsets is not None and v_data is not None  # noqa: S101
    return replace(shell, offsets=offsets, timestamps=timestamps,
                   keys=(k_offsets, k_data, k_valid), values=(v_offsets, v_data, v_valid))


def _write_rest(fd: int, batch: list[Buffer], written: int) -> None:
    for piece in batch:
        if written >= len(piece):
            written -= len(piece)
            continue
        view = memoryview(piece)[written:]
        written = 0
        while view:
            view = view[os.write(fd, view):]
