"""A request body's bytes as JSON data, strictly: what two parsers could read differently
is refused rather than guessed.

- Integers beyond 64 bits stay exact. orjson reads them as floats, silently dropping
  digits (a decimal would be stored wrong, a long refused as "got float"); the standard
  parser keeps them ints, so validation can say which field is out of range. It is used
  only when the body holds such a digit run, or when orjson refused the body (a lone
  surrogate escape, which validation explains better than "bad JSON").
- ``NaN``, ``Infinity`` and numbers too large for a double (``1e999``) are not JSON
  values a record can hold: 400.
- Duplicate keys in an object are refused (400, naming the key). RFC 8259 leaves their
  meaning open and parsers differ (first wins, last wins, error); a record whose meaning
  depends on the parser could be read one way here and another way by whoever replays
  the caller's request. Detected without a second parse on the hot path (see
  :func:`_may_repeat_keys`).
- Nesting is bounded: deeper than :data:`MAX_DEPTH` levels is a 400 (the standard
  parser's fallback is bounded by the stack, also a 400).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from onepipe.schemas.errors import RequestError

#: The deepest body accepted (orjson writes no deeper; a schema may nest 100 at most).
MAX_DEPTH = 254


def parse_json_body(raw: bytes) -> Any:
    """``raw`` as JSON data; :class:`RequestError` (400) with the reason otherwise."""
    error: ValueError | None = None
    masked = raw.translate(_MASK)
    if not _may_hold_big_int(masked):
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            error = exc
        else:
            try:
                dump = orjson.dumps(data)
            except TypeError:  # nested deeper than orjson writes (it reads 1,024 levels)
                raise _too_deep() from None
            if _may_repeat_keys(raw, masked, dump):
                _strict_loads(raw, None)  # raises, naming the repeated key
            return data
    data = _strict_loads(raw, error)
    if isinstance(data, dict | list) and _deeper_than(data, MAX_DEPTH):
        raise _too_deep()
    return data


def _too_deep() -> RequestError:
    return RequestError(
        f"request body nests deeper than {MAX_DEPTH} levels; no record or schema onepipe "
        "accepts needs that many", code="too_deep")


def _deeper_than(data: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether ``data`` nests deeper than ``limit`` (iteratively: it may be deep)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _strict_loads(raw: bytes, error: ValueError | None) -> Any:
    """The standard parser, refusing what orjson would refuse and repeated keys."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite,
                          object_pairs_hook=_unique_keys)
    except _RepeatedKey as exc:
        raise RequestError(
            f"request body repeats the key {exc.key!r} in one object; JSON parsers "
            "disagree on which value counts, so send each key once", code="duplicate_key",
        ) from None
    except (ValueError, RecursionError) as exc:
        raise RequestError(
            f"request body is not valid JSON: {error or exc}", code="malformed_json"
        ) from exc


#: One pass over the body (``bytes.translate``) that both checks below then search, in as
#: few substring searches as possible (each is a pass over the body: on 500-record bodies
#: the nine of them cost more than orjson's parse). Digits become "0"; quote, colon,
#: backslash and minus stay; the four JSON whitespace bytes become " "; "a" and "A" become
#: "a"; "u" stays; every other byte becomes "x".
_MASK = bytes(
    0x30 if 0x30 <= c <= 0x39 else c if c in b'-":\\u' else 0x20 if c in b" \t\n\r"
    else 0x61 if c in b"aA" else 0x78
    for c in range(256)
)


def _may_hold_big_int(masked: bytes) -> bool:
    """Whether the body holds a digit run that may be an integer orjson cannot hold: below
    -2**63 or above 2**64 - 1, i.e. a match of ``-\\d{19}|\\d{20}`` (both hold 19 digits)."""
    return b"0" * 19 in masked and (b"-" + b"0" * 19 in masked or b"0" * 20 in masked)


def _may_repeat_keys(raw: bytes, masked: bytes, dump: bytes) -> bool:
    """Whether ``raw`` may hold an object with a repeated key, which the parsed data
    (``dump``, orjson's re-encoding of it) dropped.

    Every key in the body is followed by ``":``; the dump writes one ``":`` per key it
    kept, escapes every quote inside a string as ``\\"`` and never escapes a colon. So
    when the body is regular, the two counts are equal exactly when no key was dropped.
    Irregular, the count is not exact: whitespace between a key and its colon, a quote
    escaped right before a colon (inside a string, or a key ending in a backslash), a
    string starting with an escaped colon (the dump writes it as ``":``); such a body
    takes the standard parser's exact check instead. Costs the dump and a few byte scans
    (about one orjson parse). A body without a backslash holds no escape, so neither
    escape case, and its dump holds no ``\\"``.
    """
    if b"\\" not in masked:
        quoted = raw.count(b'":')
        if masked.count(b":") == quoted:
            # The commonest body: every colon right after a quote (after a key, or opening
            # a string), so none after whitespace; and since the dump's strings are the
            # body's, every colon of the dump is after a quote too, so counting its colons
            # (one byte: ~0.07 µs a record) counts its '":'s (two: ~0.17). Saves that
            # and the whitespace search (~0.17) on a 500-record body.
            return quoted != dump.count(b":")
        if b' :' in masked:  # JSON whitespace before a colon (after a key, or in a string)
            return True
        # Colons inside strings (ISO timestamps): the body's count is the one above,
        # not counted again (~0.22 µs a record of a 500-record body).
        return quoted != dump.count(b'":')
    if b' :' in masked:  # JSON whitespace before a colon (after a key, or in a string)
        return True
    # '\\":', or '"\\u003a' / '"\\u003A' (and other '"\\u' + 3 digits + a: a rare false
    # alarm that only costs the exact check)
    if b'\\":' in masked or b'"\\u000a' in masked:
        return True
    return raw.count(b'":') != dump.count(b'":') - dump.count(b'\\":')


class _RepeatedKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key if len(key) <= 60 else key[:57] + "..."


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return result


def _refuse_constant(name: str) -> Any:
    """``json.loads`` takes NaN and Infinity, which are not JSON."""
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        shown = text if len(text) <= 30 else text[:27] + "..."
        raise ValueError(f"number {shown} is beyond the range of a double")
    return value
