"""Request JSON, strictly: what parsers could read differently is refused, on the fast
(orjson + counting) path and on the standard parser's path alike."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onepipe.app.web.json_body import MAX_DEPTH, parse_json_body
from onepipe.schemas.errors import RequestError

BIG = b"123456789012345678901234567890"  # takes the standard parser's path


@pytest.mark.parametrize("raw", [
    b'{"id":"a","id":"b"}',
    b'{"id": "a", "id": "b"}',
    b'{"id" : "a", "id" : "b"}',
    b'{"x":{"k":1,"k":2}}',
    b'[{"id":"good","id":"evil"},"\\u003a"]',  # a dropped key hidden by an escaped colon
    b'{"id":"k1","id":"k2","note":"\\u003A"}',
    b'{"\\u003a":1,"\\u003a":2}',
    b'{"q\\"":1,"q\\"":2}',
    b'{"n":' + BIG + b',"n":1}',
    # another key with more than one whitespace byte before its colon offset the count
    # of colons after keys (review finding: each was accepted as {"a": 2, "b": 3})
    b'{"a":1,"a":2,"b"  :3}',
    b'{"a":1,"a":2,"b"\r\n:3}',
    b'{"a":1,"a":2,"b" \t:3}',
])
def test_a_repeated_key_is_refused(raw: bytes) -> None:
    with pytest.raises(RequestError) as info:
        parse_json_body(raw)
    assert info.value.code == "duplicate_key"


@pytest.mark.parametrize("raw", [
    b'{"a":"\\u003a","b":"x\\":y","c\\\\":1,"d":"\\"e\\":"}',
    b'{"a" : 1, "b" :\n2}',
    b'{"a":1,"b" \t:3,"c":"x :y"}',
    b'{"a":' + BIG + b',"b":{"a":1}}',
])
def test_look_alikes_are_not_repeats(raw: bytes) -> None:
    assert parse_json_body(raw) == json.loads(raw)


@pytest.mark.parametrize("prefix", [b'{"a":', b'{"a" :', b'{"n":' + BIG + b',"a":'])
def test_depth_is_bounded_on_every_path(prefix: bytes) -> None:
    ok = prefix + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert parse_json_body(ok)
    deep = prefix + b"[" * 900 + b"]" * 900 + b"}"
    with pytest.raises(RequestError) as info:
        parse_json_body(deep)
    assert info.value.code == "too_deep"


@pytest.mark.parametrize("raw", [b"NaN", b"[Infinity]", b'{"n":1e999}', b'{"n":-1e400,"m":'
                                 + BIG + b"}", b"[1,]", b'{"a":1', b"\xff"])
def test_what_is_not_json_is_a_400(raw: bytes) -> None:
    with pytest.raises(RequestError) as info:
        parse_json_body(raw)
    assert info.value.status == 400


def test_big_integers_stay_exact() -> None:
    assert parse_json_body(b'{"n":' + BIG + b"}") == {"n": int(BIG)}


keys = st.text(alphabet=st.sampled_from('ab":\\\u00e9'), min_size=0, max_size=3)
values = st.recursive(st.none() | st.integers() | keys,
                      lambda inner: st.lists(inner, max_size=3)
                      | st.lists(st.tuples(keys, inner), max_size=4), max_leaves=12)


def _render(value: object, spaced: bool, escaped: bool) -> str:
    """JSON text that may repeat keys (pairs are written as given); ``escaped`` writes
    every colon inside a string as ``\\u003a``."""
    def text(v: object) -> str:
        out = json.dumps(v)
        return out.replace(":", "\\u003a") if escaped and isinstance(v, str) else out

    colon = " : " if spaced else ":"
    if isinstance(value, list) and value and all(isinstance(v, tuple) for v in value):
        return "{" + ",".join(text(k) + colon + _render(v, spaced, escaped)
                              for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_render(v, spaced, escaped) for v in value) + "]"
    return text(value)


def _has_repeat(value: object) -> bool:
    if isinstance(value, list) and value and all(isinstance(v, tuple) for v in value):
        names = [k for k, _ in value]
        return len(set(names)) < len(names) or any(_has_repeat(v) for _, v in value)
    return isinstance(value, list) and any(_has_repeat(v) for v in value)


@settings(max_examples=300, derandomize=True)
@given(values, st.booleans(), st.booleans())
def test_refused_exactly_when_a_key_repeats(value: object, spaced: bool, escaped: bool
                                             ) -> None:
    raw = _render(value, spaced, escaped).encode()
    if _has_repeat(value):
        with pytest.raises(RequestError):
            parse_json_body(raw)
    else:
        assert parse_json_body(raw) == json.loads(raw)


@pytest.mark.parametrize(("raw", "repeats"), [
    # Every colon right after a quote (the counting shortcut), strings opening with one.
    (b'{"a":":x","a":1}', True),
    (b'{"a":1,"a":2,"b":":"}', True),
    (b'[{"a":":","b":"::"},{"a":":"}]', False),
    (b'{"a":{"b":":","b":":"}}', True),
    # A colon inside a string (not first) leaves the shortcut for the general count.
    (b'{"t":"12:30","t":"12:31"}', True),
    (b'{"t":"12:30","u":"x:"}', False),
])
def test_bodies_whose_colons_all_follow_a_quote(raw: bytes, repeats: bool) -> None:
    if repeats:
        with pytest.raises(RequestError) as info:
            parse_json_body(raw)
        assert info.value.code == "duplicate_key"
    else:
        assert parse_json_body(raw) == json.loads(raw)


colon_keys = st.text(alphabet=st.sampled_from('ab:'), min_size=0, max_size=3)
colon_values = st.recursive(st.none() | st.integers() | colon_keys,
                            lambda inner: st.lists(inner, max_size=3)
                            | st.lists(st.tuples(colon_keys, inner), max_size=4),
                            max_leaves=12)


@settings(max_examples=300, derandomize=True)
@given(colon_values)
def test_refused_exactly_when_a_key_repeats_without_escapes(value: object) -> None:
    """Compact bodies with no backslash, colons anywhere in strings: the counting
    shortcut and the general count agree with the standard parser."""
    raw = _render(value, spaced=False, escaped=False).encode()
    assert b"\\" not in raw
    if _has_repeat(value):
        with pytest.raises(RequestError):
            parse_json_body(raw)
    else:
        assert parse_json_body(raw) == json.loads(raw)
