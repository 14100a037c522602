"""Concatenated JSON objects read incrementally: the body of a streamed v3 produce request.

Confluent's REST Proxy reads its produce stream with Jackson's ``MappingIterator``: JSON
objects one after another, separated by nothing or by whitespace (newlines included), in
chunks that may end anywhere, mid-string and mid-escape included.
:class:`JsonObjectSplitter` finds where each top-level object ends without parsing it:
it tracks only string state and bracket depth, jumping between the bytes that matter
with two regular expressions (``"``/``\\`` inside a string, ``"{}[]`` outside), so
a record costs a few dozen C-level searches instead of a Python step per byte. Most
clients send one object per line: a line that starts an object and parses whole is taken
as is, without the scan (a line that parses as an object, starting where an object must
start, can only be that whole object). Each object is parsed once, by the native
endpoint's strict parser (``json_body.parse_json_body``: big integers exact, repeated
keys and NaN refused), into a :class:`Document`; one that does not parse is a Document
with its error, and the stream goes on after it (its end was found by structure).

Memory is bounded: the buffer holds the one object being read plus the last chunk; an
object longer than ``max_object_bytes`` is an error (the stream cannot be resynchronised
after it, so the caller ends the stream, as Confluent does for an oversized request).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from onepipe.app.web.json_body import parse_json_body
from onepipe.schemas.errors import RequestError

__all__ = ["Document", "JsonObjectSplitter", "ObjectTooLarge", "StreamSyntaxError"]

_IN_STRING = re.compile(rb'["\\]')
_STRUCTURE = re.compile(rb'["{}\[\]]')
_NON_SPACE = re.compile(rb"[^ \t\r\n]")
#: Consumed bytes are dropped from the buffer once this many have piled up.
_COMPACT_AT = 64 * 1024

@dataclass(frozen=True, slots=True)
class Document:
    """One object of the stream, parsed."""

    #: The parsed JSON value; None when ``error`` is set.
    value: Any
    #: Why the object's bytes are not JSON (400: malformed, a repeated key, ...); None
    #: when they are.
    error: RequestError | None = None
    #: Its size in bytes.
    size: int = 0


@dataclass(frozen=True, slots=True)
class StreamSyntaxError:
    """Bytes between objects that are not the start of an object; ends the stream."""

    #: What was found, for the message.
    found: str


@dataclass(frozen=True, slots=True)
class ObjectTooLarge:
    """An object longer than the limit; ends the stream."""

    #: Bytes read of it so far (at least ``limit + 1``).
    size: int
    #: The limit.
    limit: int


Item = Document | StreamSyntaxError | ObjectTooLarge


class JsonObjectSplitter:
    """Feed chunks, get back each complete top-level JSON object's bytes, in order."""

    __slots__ = ("_buf", "_depth", "_failed", "_in_string", "_limit", "_pos", "_start")

    def __init__(self, max_object_bytes: int) -> None:
        self._limit = max_object_bytes
        self._buf = bytearray()
        self._pos = 0  # next byte to scan
        self._start = -1  # start of the object being read; -1 between objects
        self._depth = 0
        self._in_string = False
        self._failed = False

    def feed(self, chunk: bytes) -> list[Item]:
        """The objects completed by ``chunk``; a stream error is always the last item."""
        if self._failed:
            return []
        self._buf += chunk
        out: list[Item] = []
        buf = self._buf
        pos = self._pos
        end = len(buf)
        while pos < end:
            if self._start < 0:
                m = _NON_SPACE.search(buf, pos)
                if m is None:
                    pos = end
                    break
                if buf[m.start()] != 0x7B:  # "{"
                    self._failed = True
                    out.append(StreamSyntaxError(bytes(buf[m.start():m.start() + 20]).decode(
                        "utf-8", "replace")))
                    return out
                first = m.start()
                newline = buf.find(b"\n", first)
                if 0 <= newline - first <= self._limit:
                    line = bytes(buf[first:newline])
                    try:
                        value = parse_json_body(line)
                    except RequestError:
                        value = None
                    if isinstance(value, dict):
                        out.append(Document(value, None, len(line)))
                        pos = newline + 1
                        continue
                self._start, self._depth, pos = first, 1, first + 1
            elif self._in_string:
                m = _IN_STRING.search(buf, pos)
                if m is None:
                    pos = end
                    break
                if buf[m.start()] == 0x5C:  # a backslash: skip the escaped byte
                    if m.start() + 1 >= end:
                        pos = m.start()  # rescan the backslash once its byte arrives
                        break
                    pos = m.start() + 2
                else:
                    self._in_string = False
                    pos = m.end()
            else:
                m = _STRUCTURE.search(buf, pos)
                if m is None:
                    pos = end
                    break
                c = buf[m.start()]
                pos = m.end()
                if c == 0x22:  # '"'
                    self._in_string = True
                elif c in (0x7B, 0x5B):  # "{", "["
                    self._depth += 1
                else:  # "}" or "]": a mismatched pair is left to the parser to refuse
                    self._depth -= 1
                    if self._depth == 0:
                        out.append(_document(bytes(buf[self._start:pos])))
                        self._start = -1
        if self._start >= 0 and end - self._start > self._limit:
            self._failed = True
            out.append(ObjectTooLarge(end - self._start, self._limit))
            return out
        # Drop what was consumed: the object being read (if any) moves to the front.
        keep_from = self._start if self._start >= 0 else pos
        if keep_from >= _COMPACT_AT or (keep_from and keep_from == end):
            del buf[:keep_from]
            pos -= keep_from
            if self._start >= 0:
                self._start -= keep_from
        self._pos = pos
        return out

    def close(self) -> StreamSyntaxError | None:
        """At the end of the stream: an error if an object was left unfinished."""
        if self._failed or self._start < 0:
            return None
        self._failed = True
        return StreamSyntaxError(
            f"end of stream inside a JSON object ({len(self._buf) - self._start} bytes "
            "unterminated)")


def _document(raw: bytes) -> Document:
    try:
        return Document(parse_json_body(raw), None, len(raw))
    except RequestError as exc:
        return Document(None, exc, len(raw))
