"""schemathesis against a live worker: every reply is one the OpenAPI document allows.

A private worker (its own registry topic, in a thread: tests/fixtures/thread_runtime.py)
with one registered topic serves ``/openapi.json``; schemathesis loads it from there and
fuzzes every documented operation (each is routed: tests/app/test_openapi.py) with
bounded, seeded examples (the same cases every run), and checks each reply: no 5xx, a
documented status, a documented content type, a body that matches the documented schema.

The topic's fields all have defaults, so ``{}``, ``[{}]`` and ``{"records": [{}]}`` -
cases hypothesis makes often - are valid records that reach Kafka, while most others are
refused with 422; path parameters name the topic and its subject half of the time, so
reads find something. Nothing is excluded: the registry, levels and modes fuzzed are the
private worker's own, and a topic PUT that happened to pass every check would only
create a uniquely named topic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import schemathesis
from schemathesis import Case

from onepipe.app.web.openapi import openapi_document
from tests.fixtures.services import unique
from tests.fixtures.thread_runtime import ThreadedRuntime
from tests.fixtures.topics import create_topic

if TYPE_CHECKING:
    from onepipe.app.runtime import Runtime
    from onepipe.app.settings import Settings

# The worker's thread uses the `random` module (aiokafka picks brokers and backoffs with
# it) while hypothesis draws a case in this thread; hypothesis sees the module's state
# change and blames the strategy, which uses only its own randomness.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning")

#: Examples per operation and phase, plus the coverage phase's own cases (every
#: documented status, boundary and missing-field case). 25 examples made ~2,760 requests in
#: ~30-67 s with no finding beyond the 405's Allow header; 15 keep the suite in its budget.
MAX_EXAMPLES = 15
SEED = 20261206
#: Named at import: the schemathesis configuration, built at collection, points at it.
TOPIC = unique("openapi-fuzz")
FUZZ_SCHEMA: dict[str, Any] = {
    "type": "record", "name": "Fuzz", "namespace": "test.openapi",
    "fields": [{"name": "id", "type": "string", "default": ""},
               {"name": "n", "type": "long", "default": 0},
               {"name": "note", "type": ["null", "string"], "default": None}],
}


def config(topic: str) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "mode": "all",
                       "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "checks": {
            "enabled": False,
            "not_a_server_error": {"enabled": True},
            "status_code_conformance": {"enabled": True},
            "content_type_conformance": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
        },
        "dictionaries": {"topics": {"values": [topic]},
                         "subjects": {"values": [f"{topic}-value"]}},
        "parameters": {"path.topic": {"dictionary": "topics", "probability": 0.5},
                       "path.subject": {"dictionary": "subjects", "probability": 0.5}},
        "request-timeout": 30,
    })


@pytest.fixture(scope="module")
def fuzzed_worker(make_settings: Callable[..., Settings]) -> Iterator[ThreadedRuntime]:
    async def register(runtime: Runtime) -> None:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{runtime.web.port}") as http:
            await create_topic(http, TOPIC, FUZZ_SCHEMA, partitions=1)

    settings = make_settings(registry_topic=unique("_registry-openapi"))
    with ThreadedRuntime(settings, setup=register) as worker:
        yield worker


# The document the worker serves (tests/app/test_openapi.py checks they are equal); loaded
# here at collection, as schemathesis' lazy from_fixture does not run on pytest 9.
schema = schemathesis.openapi.from_dict(openapi_document(), config=config(TOPIC))


@schema.parametrize()
def test_replies_match_the_document(case: Case, fuzzed_worker: ThreadedRuntime) -> None:
    # Every documented operation is routed (tests/app/test_openapi.py, PENDING empty): an
    # operation documented ahead of its route fails here rather than being skipped.
    case.call_and_validate(base_url=fuzzed_worker.url)
