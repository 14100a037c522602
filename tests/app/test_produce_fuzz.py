"""Fuzzing the HTTP API: no input ever gets a 500, and what gets a 200 is exactly in Kafka.

How hypothesis meets the session event loop: the runtime serves HTTP on the session loop,
so requests must be sent from an ``async`` test on that loop, while ``@given`` drives a
*sync* function. So each test first runs a small sync ``@given`` function that only
collects the examples hypothesis draws into a list (:func:`draw`; generate phase only, no
database, no shrinking), then sends every collected request from the async test body.
Nothing blocks the loop while requests are in flight, and hypothesis never sees a
coroutine. The price is no shrinking: a failure names the exact request it sent, which is
small by construction.

Properties:
- every response is below 500; every 4xx body is a JSON object with an int ``error_code``,
  a str ``message`` and a str ``code``;
- after the produce fuzz, the topic holds exactly the records of the requests that got a
  200, each at the partition and offset its reply named, each the converted record it was
  sent as, decoding with its schema and re-encoding to the same bytes, keyed by its key.
"""

from __future__ import annotations

import io
import json
import string
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import aiohttp
import fastavro
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from yarl import URL

from onepipe.schemas.codec import decode, unframe
from onepipe.schemas.validation import compile_converter
from tests.fixtures.services import unique
from tests.fixtures.topics import avro_string, create_topic, read_topic, zigzag

if TYPE_CHECKING:
    from onepipe.app.runtime import Runtime

T = TypeVar("T")
PARTITIONS = 3

FUZZ_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Fuzz",
    "namespace": "test.fuzz",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "n", "type": "long"},
        {"name": "version", "type": "long"},
        {"name": "i", "type": "int"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "flag", "type": "boolean"},
        {"name": "raw", "type": "bytes"},
        {"name": "fx", "type": {"type": "fixed", "name": "Four", "size": 4}},
        {"name": "color", "type": {"type": "enum", "name": "Color",
                                   "symbols": ["RED", "GREEN", "BLUE"]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": "long"}},
        {"name": "maybe", "type": ["null", "string"], "default": None},
        {"name": "either", "type": ["int", "string"]},
        {"name": "point", "type": {"type": "record", "name": "Point", "fields": [
            {"name": "x", "type": "double"}, {"name": "y", "type": "double"}]}},
        {"name": "choice", "type": ["null", "Point", {"type": "record", "name": "Other",
                                                      "fields": [{"name": "label",
                                                                  "type": "string"}]}],
         "default": None},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "tsu", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "lts", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "tm", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "tmu", "type": {"type": "long", "logicalType": "time-micros"}},
        {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "dec", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9,
                                 "scale": 2}},
        {"name": "decf", "type": {"type": "fixed", "name": "Money", "size": 8,
                                  "logicalType": "decimal", "precision": 18, "scale": 4}},
    ],
}
FIELDS = [f["name"] for f in FUZZ_SCHEMA["fields"]]

# --- strategies -------------------------------------------------------------------------

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)  # UTF-8 encodable
ANY_TEXT = st.text(max_size=12)  # lone surrogates too
FINITE = st.floats(allow_nan=False, allow_infinity=False)
#: Any JSON-ish value, including what JSON cannot say (NaN, huge ints, lone surrogates).
JSON_LEAVES = (st.none() | st.booleans() | st.integers() | INT64
               | st.integers(-(2**70), 2**70) | st.floats() | ANY_TEXT)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(ANY_TEXT, kids, max_size=4),
    max_leaves=20,
)
OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                           timezone(timedelta(hours=-8))])
MOMENTS = st.datetimes(datetime(2, 1, 1), datetime(9998, 12, 31), timezones=OFFSETS)  # noqa: DTZ001
NAIVE = st.datetimes(datetime(2, 1, 1), datetime(9998, 12, 31))  # noqa: DTZ001


#: True about one time in ten. Not ``st.integers(0, 9) == 0``: hypothesis favours small
#: and boundary values, so that is true far more often than one time in ten.
MOSTLY_NOT = st.sampled_from([False] * 9 + [True])


def latin1(data: bytes) -> str:
    return data.decode("latin-1")


def millis(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def wrapped(name: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A union value, bare or in Avro's wrapped JSON form."""
    return values | values.map(lambda v: {name: v})


POINT = st.fixed_dictionaries({"x": FINITE, "y": FINITE | INT32})
VALID: dict[str, st.SearchStrategy[Any]] = {
    "id": TEXT,
    "n": INT64,
    "version": INT64,
    "i": INT32,
    "f": st.floats(width=32, allow_nan=False, allow_infinity=False) | st.integers(-1000, 1000),
    "d": FINITE | st.integers(-(2**60), 2**60),
    "flag": st.booleans(),
    "raw": st.binary(max_size=8).map(latin1),
    "fx": st.binary(min_size=4, max_size=4).map(latin1),
    "color": st.sampled_from(["RED", "GREEN", "BLUE"]),
    "tags": st.lists(TEXT, max_size=3),
    "attrs": st.dictionaries(TEXT, INT64, max_size=3),
    "maybe": st.none() | wrapped("string", TEXT),
    "either": wrapped("int", INT32) | wrapped("string", TEXT),
    "point": POINT,
    "choice": (st.none() | POINT | st.fixed_dictionaries({"label": TEXT})
               | POINT.map(lambda p: {"test.fuzz.Point": p})
               | TEXT.map(lambda t: {"Other": {"label": t}})),
    "ts": st.integers(-(10**13), 10**13) | MOMENTS.map(lambda m: millis(m).isoformat()),
    "tsu": st.integers(-(10**16), 10**16) | MOMENTS.map(datetime.isoformat),
    "lts": st.integers(-(10**13), 10**13) | NAIVE.map(lambda m: millis(m).isoformat()),
    "day": st.integers(-700_000, 2_900_000) | st.dates().map(lambda d: d.isoformat()),
    "tm": (st.integers(0, 86_399_999)
           | st.times().map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)
                            .isoformat())),
    "tmu": st.integers(0, 86_399_999_999) | st.times().map(lambda t: t.isoformat()),
    "u": st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper()),
    "dec": (st.integers(-9_999_999, 9_999_999)
            | st.decimals(Decimal("-9999999.99"), Decimal("9999999.99"), places=2).map(str)),
    "decf": (st.integers(-(10**13), 10**13)
             | st.decimals(Decimal("-99999999999999.9999"), Decimal("99999999999999.9999"),
                           places=4).map(str)),
}
VALID_RECORD = st.fixed_dictionaries(VALID, optional={})


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    """A valid record, often with one thing changed: a field replaced, removed or added."""
    record = dict(draw(VALID_RECORD))
    how = draw(st.sampled_from(["none", "none", "replace", "swap", "remove", "add", "nested"]))
    name = draw(st.sampled_from(FIELDS))
    if how == "replace":
        record[name] = draw(JSON_VALUES)
    elif how == "swap":  # a valid value of another field: the type confusions clients make
        record[name] = draw(VALID[draw(st.sampled_from(FIELDS))])
    elif how == "remove":
        record.pop(name)
    elif how == "add":
        record[draw(ANY_TEXT)] = draw(JSON_VALUES)
    elif how == "nested":
        record["point"] = {**record["point"], draw(st.sampled_from(["x", "y", "z"])):
                           draw(JSON_VALUES)}
    return record


def json_bytes(value: Any, ascii_only: bool) -> bytes:
    # surrogatepass: a lone surrogate becomes bytes that are not UTF-8, which is fuzz too.
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


CONTENT_TYPES = (
    st.sampled_from([
        "application/json", "application/json", "application/json; charset=utf-8",
        "application/vnd.schemaregistry.v1+json", "application/octet-stream",
        "text/plain", "application/xml", "multipart/form-data; boundary=x", "*/*", "json",
        "application/json;;", "",
    ])
    | st.text(st.sampled_from(string.printable[:-5]), max_size=30)
    | st.none()  # no Content-Type header at all
)


class Request:
    """One HTTP request to send, shown in full (but a long body cut) when a check fails."""

    __slots__ = ("body", "content_type", "method", "path")

    def __init__(self, method: str, path: str, body: bytes, content_type: str | None) -> None:
        self.method, self.path, self.body, self.content_type = method, path, body, content_type

    def __repr__(self) -> str:
        return (f"Request({self.method} {self.path}, content_type={self.content_type!r}, "
                f"body={self.body[:400]!r})")


@st.composite
def produce_request(draw: st.DrawFn, topic: str) -> Request:
    """A produce request: near-valid records in every body shape, or random JSON/bytes."""
    shape = draw(st.sampled_from(["one", "batch", "array", "batch", "json", "bytes"]))
    if shape == "one":
        body: Any = draw(near_valid())
    elif shape in ("batch", "array"):
        records = draw(st.lists(near_valid(), min_size=1, max_size=4))
        body = records if shape == "array" else {"records": records}
    else:
        body = draw(JSON_VALUES)
    raw = (draw(st.binary(max_size=200)) if shape == "bytes"
           else json_bytes(body, draw(st.booleans())))
    content_type = draw(CONTENT_TYPES) if draw(MOSTLY_NOT) else "application/json"
    query = draw(st.sampled_from(["", "", "", "?version=1", "?version=latest", "?version=2",
                                  "?version=abc", "?version=-1", "?version=",
                                  "?version=99999999999999999999"]))
    return Request("POST", f"/topics/{topic}/records{query}", raw, content_type)


def segment(text: str) -> str:
    quoted = quote(text.encode("utf-8", "surrogatepass"), safe="")
    return quoted if quoted not in ("", ".", "..") else "x"


AVRO_TYPES = st.recursive(
    st.sampled_from(["null", "boolean", "int", "long", "float", "double", "bytes", "string",
                     "Nope", "record"]) | ANY_TEXT,
    lambda kids: (
        st.lists(kids, max_size=3)  # unions
        | st.fixed_dictionaries({"type": st.just("array"), "items": kids})
        | st.fixed_dictionaries({"type": st.just("map"), "values": kids})
        | st.fixed_dictionaries({"type": st.just("record"), "name": ANY_TEXT,
                                 "fields": st.lists(st.fixed_dictionaries(
                                     {"name": ANY_TEXT, "type": kids},
                                     optional={"default": JSON_VALUES}), max_size=3)})
        | st.fixed_dictionaries({"type": st.just("enum"), "name": ANY_TEXT,
                                 "symbols": st.lists(ANY_TEXT, max_size=3)},
                                optional={"default": ANY_TEXT})
        | st.fixed_dictionaries({"type": st.sampled_from(["fixed", "bytes", "int", "long"]),
                                 "name": ANY_TEXT, "size": JSON_LEAVES},
                                optional={"logicalType": st.sampled_from(
                                    ["decimal", "date", "uuid", "timestamp-millis", "x"]),
                                    "precision": JSON_LEAVES, "scale": JSON_LEAVES})
        | st.dictionaries(ANY_TEXT, kids, max_size=3)
    ),
    max_leaves=12,
)
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
FIELD_TYPES = st.recursive(
    st.sampled_from(["null", "boolean", "int", "long", "float", "double", "bytes", "string"]),
    lambda kids: (st.fixed_dictionaries({"type": st.just("array"), "items": kids})
                  | st.fixed_dictionaries({"type": st.just("map"), "values": kids})
                  | st.lists(kids, min_size=1, max_size=3, unique_by=json.dumps)),
    max_leaves=4,
)
#: Record schemas that mostly parse: registrations succeed, evolve, or break compatibility.
VALID_SCHEMAS = st.fixed_dictionaries({
    "type": st.just("record"),
    "name": NAMES,
    "fields": st.lists(st.fixed_dictionaries(
        {"name": NAMES, "type": FIELD_TYPES},
        optional={"default": st.none() | st.integers(-5, 5) | TEXT | st.just([])}),
        max_size=4, unique_by=lambda f: str(f["name"])),  # type: ignore[index]
})
#: ``{"schema": "<text>"}`` bodies the registry endpoints take, made to be near-valid.
SCHEMA_BODIES = st.fixed_dictionaries(
    {"schema": (VALID_SCHEMAS.map(json.dumps) | AVRO_TYPES.map(json.dumps) | ANY_TEXT
                | JSON_VALUES)},
    optional={"schemaType": st.sampled_from(["AVRO", "JSON", "PROTOBUF"]) | JSON_LEAVES,
              "references": JSON_VALUES},
)
#: Never a valid global level: the runtime is shared, and the default must not change.
CONFIG_BODIES = st.fixed_dictionaries(
    {"compatibility": ANY_TEXT.filter(lambda t: t.upper() not in {
        "NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL",
        "FULL_TRANSITIVE"}) | JSON_VALUES}
) | JSON_VALUES


@st.composite
def registry_request(draw: st.DrawFn, prefix: str, topic: str) -> Request:
    """Registry, catalog and random paths with random or near-valid bodies."""
    # Subjects are this test's own (or the fuzz topic's), so no other test is disturbed.
    subject = draw(st.sampled_from([f"{topic}-value", f"{prefix}-a"])
                   | ANY_TEXT.map(lambda t: f"{prefix}-{t}"))
    s = segment(subject)
    version = draw(st.sampled_from(["1", "latest", "-1", "0", "abc", "2147483648"])
                   | ANY_TEXT.map(segment))
    kind = draw(st.sampled_from(["register", "lookup", "compat", "compat_v", "config",
                                 "config_s", "metadata", "random", "random"]))
    method = "POST"
    body_strategy: st.SearchStrategy[Any] = SCHEMA_BODIES
    if kind == "register":
        path = f"/subjects/{s}/versions"
    elif kind == "lookup":
        path = f"/subjects/{s}"
    elif kind == "compat":
        path = f"/compatibility/subjects/{s}/versions"
    elif kind == "compat_v":
        path = f"/compatibility/subjects/{s}/versions/{version}"
    elif kind == "config":
        method, path, body_strategy = "PUT", "/config", CONFIG_BODIES
    elif kind == "config_s":
        method, path = "PUT", f"/config/{s}"
        body_strategy = st.one_of(st.fixed_dictionaries({"compatibility": st.sampled_from(
            ["NONE", "FULL", "BACKWARD", "bogus"]) | JSON_VALUES}), JSON_VALUES)
    elif kind == "metadata":
        method = "PUT"
        path = f"/topics/{segment(draw(ANY_TEXT.map(lambda t: f'{prefix}-{t}')))}/metadata"
        body_strategy = st.one_of(st.fixed_dictionaries(
            {"schema": AVRO_TYPES | JSON_VALUES},
            optional={"partitions": JSON_LEAVES, "key": JSON_VALUES, "order": JSON_VALUES,
                      "partition_time": JSON_VALUES, "checks": JSON_VALUES,
                      "archive": JSON_VALUES, "sinks": JSON_VALUES,
                      "compatibility": JSON_VALUES},
        ), JSON_VALUES)
    else:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]))
        root = draw(st.sampled_from(["/topics/", "/subjects/", "/schemas/ids/",
                                     "/compatibility/subjects/", "/config/"]))
        parts = draw(st.lists(ANY_TEXT.map(segment) | st.sampled_from(
            ["versions", "records", "metadata", "latest", "schema", "1"]), max_size=4))
        if method != "GET" and parts:
            # The first segment names a subject or topic a write could create or change:
            # keep it this test's own, so the shared registry and broker stay clean.
            parts[0] = segment(f"{prefix}-") + parts[0]
        path = root + "/".join(parts)
    raw = json_bytes(draw(body_strategy), draw(st.booleans()))
    if draw(MOSTLY_NOT):
        raw = draw(st.binary(max_size=100))
    content_type = draw(st.sampled_from(["application/vnd.schemaregistry.v1+json",
                                         "application/json"]) | st.none() | CONTENT_TYPES)
    return Request(method, path, raw, content_type)


def draw(strategy: st.SearchStrategy[T], count: int) -> list[T]:
    """Up to ``count`` examples of ``strategy`` (see the module docstring for why)."""
    out: list[T] = []

    @settings(max_examples=count, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(example: T) -> None:
        out.append(example)

    collect()
    return out


# --- sending ----------------------------------------------------------------------------


async def send(client: aiohttp.ClientSession, base: str, request: Request) -> tuple[int, Any]:
    """Send one request; check the error contract; return (status, JSON body or None)."""
    headers = {} if request.content_type is None else {"Content-Type": request.content_type}
    skip = ["Content-Type"] if request.content_type is None else []
    url = URL(base + request.path, encoded=True)
    async with client.request(request.method, url, data=request.body, headers=headers,
                              skip_auto_headers=skip) as resp:
        status, text = resp.status, await resp.read()
    assert status < 500, (status, text[:500], request)
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if status >= 400:
        assert isinstance(body, dict), (status, text[:500], request)
        assert isinstance(body.get("error_code"), int), (body, request)
        assert isinstance(body.get("message"), str), (body, request)
        assert isinstance(body.get("code"), str), (body, request)
    return status, body


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def records_of(body: Any) -> list[Any]:
    """The records a produce body carries, as the endpoint reads it (200 replies only)."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict) and isinstance(body.get("records"), list) and set(body) <= {
            "records", "version"}:
        return body["records"]
    return [body]


async def test_produce_fuzz_never_fails_and_kafka_holds_exactly_the_accepted_records(
    http: aiohttp.ClientSession, client: aiohttp.ClientSession, runtime: Runtime, broker: str
) -> None:
    topic = unique("fuzz-produce")
    created = await create_topic(http, topic, FUZZ_SCHEMA, partitions=PARTITIONS,
                                 key=["id", "n"], order={"rule": "max", "field": "version"})
    base = f"http://127.0.0.1:{runtime.web.port}"
    requests = draw(produce_request(topic), 300)
    assert len(requests) > 100

    # Kafka coordinates -> the JSON record sent there.
    accepted: dict[tuple[int, int], Any] = {}
    statuses: dict[int, int] = {}
    for request in requests:
        status, reply = await send(client, base, request)
        statuses[status] = statuses.get(status, 0) + 1
        if status != 200:
            continue
        assert reply["value_schema_id"] == created["id"], (reply, request)
        sent = records_of(json.loads(request.body))
        assert len(reply["offsets"]) == len(sent), (reply, request)
        for record, where in zip(sent, reply["offsets"], strict=True):
            coords = (where["partition"], where["offset"])
            assert coords not in accepted, (coords, request)
            accepted[coords] = record
    # The fuzz must reach both sides: records accepted and records refused.
    assert statuses.get(200, 0) >= 20, statuses
    assert statuses.get(422, 0) >= 20, statuses

    records, watermarks = await read_topic(broker, topic, PARTITIONS)
    in_kafka = {(p, r.offset): r for p, rs in records.items() for r in rs}
    assert set(in_kafka) == set(accepted)
    assert sum(watermarks.values()) == len(accepted)
    schema = runtime.registry.state.schema_by_id(created["id"])
    converter = compile_converter(schema)
    for coords, record in accepted.items():
        kafka = in_kafka[coords]
        schema_id, body = unframe(kafka.value)
        assert schema_id == created["id"]
        # What is in Kafka is the sent record as validation converted it...
        datum, errors = converter.convert(record)
        assert errors == []
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema.parsed, datum)
        assert buf.getvalue() == bytes(body), (coords, record)
        # ...which every reader decodes, and which encodes back to the same bytes.
        _, decoded = decode(kafka.value, runtime.registry.state.schema_by_id)
        again = io.BytesIO()
        fastavro.schemaless_writer(again, schema.parsed, decoded)
        assert again.getvalue() == bytes(body), (coords, decoded)
        assert kafka.key == avro_string(decoded["id"]) + zigzag(decoded["n"])


async def test_registry_and_catalog_fuzz_never_fails(
    http: aiohttp.ClientSession, client: aiohttp.ClientSession, runtime: Runtime
) -> None:
    prefix = unique("fuzz-reg")
    topic = unique("fuzz-regtopic")
    await create_topic(http, topic, FUZZ_SCHEMA, partitions=1, key=["id"])
    async with http.get("/config") as resp:
        global_config = await resp.json()
    base = f"http://127.0.0.1:{runtime.web.port}"
    requests = draw(registry_request(prefix, topic), 250)
    assert len(requests) > 100
    statuses: dict[int, int] = {}
    for request in requests:
        status, _ = await send(client, base, request)
        statuses[status] = statuses.get(status, 0) + 1
    assert len(statuses) >= 3, statuses
    async with http.get("/config") as resp:
        assert await resp.json() == global_config
    # The fuzz topic's metadata and schema are untouched or validly evolved.
    async with http.get(f"/topics/{topic}/metadata") as resp:
        assert resp.status == 200
        meta = await resp.json()
    assert meta["key"] == ["id"]
