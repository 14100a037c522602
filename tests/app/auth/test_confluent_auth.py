"""confluent_kafka's SchemaRegistryClient, unchanged, authenticating with onepipe tokens.

It sends the token as HTTP Basic's password (``basic.auth.user.info``, through httpx,
preemptively) or as a Bearer token (``bearer.auth.credentials.source: STATIC_TOKEN``;
its ``target-sr-cluster`` header is ignored). Blocking calls run in a thread: the
worker answers on this test's event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from onepipe.app.auth import add_token
from onepipe.app.runtime import Runtime
from onepipe.app.settings import Settings
from tests.fixtures.services import unique

SCHEMA = Schema(json.dumps({"type": "record", "name": "Ping", "namespace": "test.auth",
                            "fields": [{"name": "id", "type": "string"}]}), "AVRO")


@dataclass
class Worker:
    url: str
    admin: str
    publisher: str


@pytest.fixture(scope="module")
async def worker(make_settings: Callable[..., Settings],
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Worker]:
    path = tmp_path_factory.mktemp("auth") / "tokens.json"
    admin, _ = add_token(path, "schemas", [], admin=True)
    publisher, _ = add_token(path, "app", ["*"], admin=False)
    # Reads need a token here too: the client must authenticate every call.
    settings = make_settings(tokens_file=path, auth_reads="token",
                             registry_topic=unique("_registry"))
    async with Runtime(settings) as runtime:
        yield Worker(f"http://127.0.0.1:{runtime.web.port}", admin, publisher)


def client(url: str, **conf: Any) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": url, "max.retries": 0, **conf})


async def registry_error(call: Callable[[], Any]) -> SchemaRegistryError:
    with pytest.raises(SchemaRegistryError) as caught:
        await asyncio.to_thread(call)
    return caught.value


async def test_basic_user_info_with_the_token_as_password(worker: Worker) -> None:
    subject = unique("basic-value")
    admin = client(worker.url, **{"basic.auth.user.info": f"schemas:{worker.admin}"})
    schema_id = await asyncio.to_thread(admin.register_schema, subject, SCHEMA)
    # A publisher's token reads (looks up, fetches by id) but may not register.
    reader = client(worker.url, **{"basic.auth.user.info": f"app:{worker.publisher}"})
    found = await asyncio.to_thread(reader.lookup_schema, subject, SCHEMA)
    assert found.schema_id == schema_id
    fetched = await asyncio.to_thread(reader.get_schema, schema_id)
    assert json.loads(fetched.schema_str or "") == json.loads(SCHEMA.schema_str or "")
    error = await registry_error(lambda: reader.register_schema(unique("no-value"), SCHEMA))
    assert (error.http_status_code, error.error_code) == (403, 40301)
    assert "token 'app' may not change the registry" in error.error_message
    wrong = client(worker.url, **{"basic.auth.user.info": f"app:{worker.publisher}x"})
    error = await registry_error(lambda: wrong.get_subjects())
    assert (error.http_status_code, error.error_code) == (401, 40101)
    for registry in (admin, reader, wrong):
        registry.close()


async def test_a_static_bearer_token(worker: Worker) -> None:
    bearer = client(worker.url, **{"bearer.auth.credentials.source": "STATIC_TOKEN",
                                   "bearer.auth.token": worker.admin,
                                   "bearer.auth.logical.cluster": "onepipe"})
    subject = unique("bearer-value")
    schema_id = await asyncio.to_thread(bearer.register_schema, subject, SCHEMA)
    assert subject in await asyncio.to_thread(bearer.get_subjects)
    assert (await asyncio.to_thread(bearer.get_latest_version, subject)).schema_id == schema_id
    anonymous = client(worker.url)
    error = await registry_error(anonymous.get_subjects)
    assert (error.http_status_code, error.error_code) == (401, 40101)
    bearer.close()
    anonymous.close()
