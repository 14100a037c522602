"""A segment handed to an encoder process through shared memory instead of a pipe.

Contract: :func:`share` writes a segment's chunk bytes into an anonymous memory file
(``memfd_create``) and returns that file with a :class:`SharedSegment` naming where each
buffer lies; :func:`encode_shared`, in the encoder, maps the file and encodes the very same
records as onepipe.agents.archive.encode.encode_segment would (the same bytes out). A file
is written again (``share(segment, fd)``, :class:`MemoryFiles`) only after its encoder
answered; one whose encoder may still read it (the writer gave up waiting: cancelled, an
error, a broken pool) is closed and never written again. Nothing outlives both processes
(the file has no name, so a crash leaks nothing).

Why: through the pool's pipe a segment was copied four times in user space (pickled by the
agent; read out of the pipe in pieces and gathered, then unpickled by the encoder), plus
the pipe's two kernel copies, each into memory fresh from the kernel (a page fault per 4 KiB,
~1-2 µs each on this VM). Here the agent's kernel writes it once into the file and the
encoder reads it where it lies (bench/archive.py, with the chunked columns of
onepipe.agents.archive.columns: the encoders' page faults at 2 KB 0.54-0.89 -> 0.23-0.53 a
record).

Memory: a file holds a segment from its hand-over until its encoder answered (at most the
writer's ``max_in_flight`` of them); it is shared memory, so it shows in the encoder's RSS
while mapped, not in the agent's. The agent's memory bound counts those bytes as in flight
either way. Then the file is kept for a later segment while the kept files hold at most
:data:`KEEP_BYTES` (:class:`MemoryFiles`), else closed.

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

__all__ = ["KEEP_BYTES", "MemoryFiles", "SharedSegment", "available", "encode_shared", "share"]

#: Most buffers one ``pwritev`` takes (Linux's IOV_MAX).
_IOV_MAX = 1024
#: Bytes of memory files a writer keeps between segments (:class:`MemoryFiles`): three
#: 20 MB segments (10,000 records of 2 KB), or all four of ``max_in_flight`` at 200 B.
KEEP_BYTES = 64 * 1024 * 1024


#: Where one buffer lies in the file: (start, length); None for an absent buffer.
Place = tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class SharedSegment:
    """A :class:`~onepipe.agents.archive.encode.Segment` whose chunk bytes are in a file."""

    #: The agent's process id and its descriptor of the file (opened via ``/proc``).
    pid: int
    fd: int
    #: The file's (device, inode): a descriptor closed and reused meanwhile (the agent
    #: gave up waiting) names another file, which is then not read. It names the file,
    #: not the segment: a kept file has one identity for every segment it carries, so
    #: it is written again only after its encoder answered (module docstring).
    identity: tuple[int, int]
    #: Each chunk without its bytes (empty), and where its eight buffers lie: offsets,
    #: timestamps, then the keys' and the values' (offsets, data, validity).
    chunks: list[tuple[Chunk, tuple[Place, ...]]]
    reader: str | None
    writers: dict[int, str]


def available() -> bool:
    """Whether this platform has the memory files and ``/proc`` the handoff needs."""
    return hasattr(os, "memfd_create") and Path(f"/proc/{os.getpid()}/fd").is_dir()


class MemoryFiles:
    """Memory files kept for the next segments, so most segments are written over pages
    the kernel already has instead of into fresh ones.

    Why: a fresh file's pages are allocated and zeroed as the segment is written, which
    cost more than the copy itself (a 20 MB segment of 2-KB records, written in 8 pieces:
    0.97 µs a record into a new file, 0.26 over a kept one; bench/archive.py at 2 KB,
    three alternating pairs: 110-132k -> 145-155k rec/s, the agent 4.7-5.5 -> 3.9-4.1 µs
    and the encoder 4.7-5.3 -> 4.1-4.3 µs a record; no change beyond noise at 200 B,
    whose fresh pages cost little beside the rest).

    Memory: a file given back is kept only if the kept files then hold at most
    ``keep_bytes`` together, else closed. Kept files are memory the agent holds beyond
    what its bound counts (:attr:`held_bytes`): shared memory mapped by no process, so in
    no RSS, but charged to the agent's container. A file taken again is cut to its new
    segment's size (:func:`share`), which the agent counts as in flight.

    Used from the event loop only (:meth:`take`, :meth:`give`, :meth:`close`); the
    segment is written in a thread (:func:`share`). After :meth:`close`, a file given
    back is closed.
    """

    def __init__(self, keep_bytes: int) -> None:
        self._keep_bytes = keep_bytes
        #: Kept files: (descriptor, size), the last given first taken.
        self._free: list[tuple[int, int]] = []
        self._closed = False

    @property
    def held_bytes(self) -> int:
        """Bytes of the kept files."""
        return sum(size for _, size in self._free)

    def take(self) -> int | None:
        """A kept file's descriptor (the caller writes it and gives it back), or None."""
        return self._free.pop()[0] if self._free else None

    def give(self, fd: int) -> None:
        """Take back a file whose segment has been encoded: keep it, or close it."""
        size = os.fstat(fd).st_size
        if not self._closed and size + self.held_bytes <= self._keep_bytes:
            self._free.append((fd, size))
        else:
            os.close(fd)

    def close(self) -> None:
        """Close every kept file, and every file given back from now on; harmless twice."""
        self._closed = True
        free, self._free = self._free, []
        for fd, _ in free:
            os.close(fd)


def share(segment: Segment, fd: int | None = None) -> tuple[int, SharedSegment]:
    """Write the segment's chunk bytes into a memory file - ``fd`` (a kept one, written
    from its start and cut to the segment's size) or a new one - and return its
    descriptor and the segment naming them. Blocking (a copy of the segment): run it in a
    thread. A failure closes the file."""
    if fd is None:
        fd = os.memfd_create("onepipe-archive-segment", os.MFD_CLOEXEC)
    try:
        pieces: list[Buffer] = []
        chunks = []
        end = 0
        for chunk in segment.chunks:
            shell, places, end = _place(chunk, pieces, end)
            chunks.append((shell, places))
        offset = 0
        for i in range(0, len(pieces), _IOV_MAX):
            batch = pieces[i:i + _IOV_MAX]
            size = sum(map(len, batch))
            written = os.pwritev(fd, batch, offset)
            if written != size:  # a short write: finish it piece by piece
                _write_rest(fd, batch, written, offset)
            offset += size
        stat = os.fstat(fd)
        if stat.st_size > offset:  # a kept file, larger: its tail goes back to the kernel
            os.ftruncate(fd, offset)
    except BaseException:
        os.close(fd)
        raise
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


def _write_rest(fd: int, batch: list[Buffer], written: int, offset: int) -> None:
    """Finish a short ``pwritev`` of ``batch`` at ``offset`` (``written`` bytes done)."""
    at = offset + written
    for piece in batch:
        if written >= len(piece):
            written -= len(piece)
            continue
        view = memoryview(piece)[written:]
        written = 0
        while view:
            done = os.pwrite(fd, view, at)
            view, at = view[done:], at + done
