"""Confluent REST Proxy v3 produce, so clients written for it switch to onepipe unchanged.

Routes (shapes: kafka-rest ``api/v3/openapi.yaml``; records: ``produce_v3_records``)::

    GET  /v3/clusters                                   ClusterDataList (one cluster)
    GET  /v3/clusters/{cluster_id}                      ClusterData
    GET  /v3/clusters/{cluster_id}/topics/{topic}       TopicData (registered topics)
    POST /v3/clusters/{cluster_id}/topics/{topic}/records

The cluster id is the Kafka cluster id from the broker's metadata (asked once, through
the admin client factory); a broker too old to report one gets ``onepipe-<app_id>``.

Produce contract: every record is validated and encoded by the topic's writer as the
native ``POST /topics/{topic}/records`` does, keyed by its unique key, and answered after
the broker acknowledged it. A body of one request gets one ``ProduceResponse`` (or its
error with the error's HTTP status). A body of several concatenated requests, or any
``Transfer-Encoding: chunked`` body (Confluent's streaming mode), gets HTTP 200 and one
reply per request, in order, each a ``ProduceResponse`` (``error_code`` 200) or an error
object; an invalid record is answered with its error and the stream goes on.

Streaming is bounded: the body is read chunk by chunk (never whole) and split into
objects as they complete (``json_stream``); the parsed requests waiting to be sent hold
at most twice ``max_request_bytes`` (each counted at least 1 KiB), and each batch of up
to :data:`~onepipe.app.web.produce_v3_batch.MAX_BATCH` (``produce_v3_batch``) is
validated, sent and acknowledged before the next is sent, while the next is being read.
A record longer than ``max_request_bytes`` (or bytes that are not an object) ends the
stream after its error reply, as Confluent stops its stream; so does a silence longer
than ``ONEPIPE_REQUEST_READ_SECONDS`` (408), and a client that closes the connection ends
it quietly. Replies are written as each batch is acknowledged (``\\r\\n`` after each, as
Confluent's chunks).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError

from onepipe.app.context import WorkerContext
from onepipe.app.web.http import CTX, json_response
from onepipe.app.web.json_stream import Document, JsonObjectSplitter
from onepipe.app.web.produce_v3_batch import MAX_BATCH, Batcher
from onepipe.app.web.produce_v3_records import topic_not_found
from onepipe.schemas.errors import BrokerError, NotFoundError, RequestError

log = logging.getLogger(__name__)

_READ_CHUNK = 64 * 1024
_CHARSETS = frozenset({None, "utf-8", "iso-8859-1"})


@dataclass(slots=True)
class ClusterIdCache:
    """The Kafka cluster id, asked of the broker once."""

    value: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def get(self, ctx: WorkerContext) -> str:
        if self.value is not None:
            return self.value
        async with self.lock:
            if self.value is None:
                self.value = await _ask_cluster_id(ctx)
        return self.value


CLUSTER = web.AppKey("onepipe_v3_cluster", ClusterIdCache)


async def _ask_cluster_id(ctx: WorkerContext) -> str:
    admin = ctx.settings.kafka.admin("onepipe-rest-v3")
    try:
        async with asyncio.timeout(ctx.settings.produce_timeout):
            await admin.start()
            try:
                described = await admin.describe_cluster()
            finally:
                await admin.close()
    except (TimeoutError, KafkaError, OSError) as exc:
        raise BrokerError(f"Kafka did not say its cluster id: {exc!r}; retry") from exc
    found = described.get("cluster_id")
    return found if isinstance(found, str) and found else f"onepipe-{ctx.settings.app_id}"


async def _cluster(request: web.Request) -> tuple[WorkerContext, str]:
    """The context and the cluster id, 404 if the path names another cluster."""
    ctx = request.app[CTX]
    cluster_id = await request.app[CLUSTER].get(ctx)
    asked = request.match_info.get("cluster_id")
    if asked is not None and asked != cluster_id:
        raise NotFoundError(f"Cluster {asked} cannot be found.", 404)
    return ctx, cluster_id


def _cluster_data(base: str, cluster_id: str) -> dict[str, Any]:
    url = f"{base}/v3/clusters/{cluster_id}"
    related = {name: {"related": f"{url}/{path}"} for name, path in (
        ("acls", "acls"), ("brokers", "brokers"), ("broker_configs", "broker-configs"),
        ("consumer_groups", "consumer-groups"), ("topics", "topics"),
        ("partition_reassignments", "topics/-/partitions/-/reassignment"))}
    return {"kind": "KafkaCluster",
            "metadata": {"self": url, "resource_name": f"crn:///kafka={cluster_id}"},
            "cluster_id": cluster_id, **related}


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def list_clusters(request: web.Request) -> web.Response:
    _, cluster_id = await _cluster(request)
    return json_response({"kind": "KafkaClusterList",
                          "metadata": {"self": f"{_base(request)}/v3/clusters", "next": None},
                          "data": [_cluster_data(_base(request), cluster_id)]})


async def get_cluster(request: web.Request) -> web.Response:
    _, cluster_id = await _cluster(request)
    return json_response(_cluster_data(_base(request), cluster_id))


async def get_topic(request: web.Request) -> web.Response:
    ctx, cluster_id = await _cluster(request)
    topic = request.match_info["topic"]
    meta = ctx.registry.state.topics.get(topic)
    if meta is None:
        raise topic_not_found(topic)
    url = f"{_base(request)}/v3/clusters/{cluster_id}/topics/{topic}"
    return json_response({
        "kind": "KafkaTopic",
        "metadata": {"self": url, "resource_name": f"crn:///kafka={cluster_id}/topic={topic}"},
        "cluster_id": cluster_id, "topic_name": topic, "is_internal": False,
        "replication_factor": ctx.settings.replication_factor,
        "partitions_count": meta.partitions,
        "partitions": {"related": f"{url}/partitions"},
        "configs": {"related": f"{url}/configs"},
        "partition_reassignments": {"related": f"{url}/partitions/-/reassignment"},
    })


async def produce(request: web.Request) -> web.StreamResponse:
    ctx, cluster_id = await _cluster(request)
    topic = request.match_info["topic"]
    if ctx.registry.lost_log is not None:  # the broker lost its log: acknowledge nothing
        raise BrokerError(ctx.registry.lost_log)
    if topic not in ctx.registry.state.topics:  # before the body: 404 whatever it holds
        raise topic_not_found(topic)
    if request.content_type != "application/json" or request.charset not in _CHARSETS:
        raise RequestError(
            f"HTTP 415 Unsupported Media Type: {request.headers.get('Content-Type', '(none)')!r}"
            "; send Content-Type: application/json (UTF-8)",
            status=415, code="unsupported_media_type")
    batcher = Batcher(ctx, topic, cluster_id)
    limit = ctx.settings.max_request_bytes
    if "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        if request.content_length is not None and request.content_length > limit:
            raise RequestError(
                f"The request included a message larger than the maximum message size the "
                f"server can accept: {request.content_length} bytes, limit {limit} "
                "(ONEPIPE_MAX_REQUEST_BYTES); stream the records with chunked encoding",
                status=413, code="payload_too_large")
        splitter = JsonObjectSplitter(limit)
        items = [*splitter.feed(await _read_whole(request)), splitter.close()]
        found = [i for i in items if i is not None]
        if not found:
            raise RequestError("Payload error. Request body is empty. Data is required.",
                               status=422, code="empty_body")
        if len(found) == 1:
            status, body = (await batcher.run(found))[0]
            return json_response(body, status=status)
        return await _stream(request, batcher, _listed(found))
    return await _stream(request, batcher, _read(request, JsonObjectSplitter(limit)))


async def _read_whole(request: web.Request) -> bytes:
    """A body that is not streamed, within ONEPIPE_REQUEST_READ_SECONDS (408 after)."""
    seconds = request.app[CTX].settings.request_read_seconds
    try:
        async with asyncio.timeout(seconds):
            return await request.read()
    except TimeoutError:
        raise RequestError(f"the request body did not arrive within {seconds:g} s "
                           "(ONEPIPE_REQUEST_READ_SECONDS); send it at once", status=408,
                           code="request_timeout") from None


async def _listed(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def _read(request: web.Request, splitter: JsonObjectSplitter) -> AsyncIterator[Any]:
    """The body's objects as they complete; a stream error is the last item.

    A stream may last as long as its client keeps sending, but a silence longer than
    ``ONEPIPE_REQUEST_READ_SECONDS`` ends it (with a 408 reply), so an idle client does
    not hold a connection and a handler for ever.
    """
    idle = request.app[CTX].settings.request_read_seconds
    while True:
        try:
            async with asyncio.timeout(idle):
                chunk = await request.content.read(_READ_CHUNK)
        except TimeoutError:
            yield Document(None, RequestError(
                f"nothing arrived for {idle:g} s (ONEPIPE_REQUEST_READ_SECONDS); the stream "
                "ends here", status=408, code="request_timeout"))
            return
        if not chunk:
            break
        for item in splitter.feed(chunk):
            yield item
            if not isinstance(item, Document):
                return
    tail = splitter.close()
    if tail is not None:
        yield tail


async def _stream(request: web.Request, batcher: Batcher, items: AsyncIterator[Any]
                  ) -> web.StreamResponse:
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    await response.prepare(request)
    # Parsed requests wait here while earlier ones are sent: bounded in bytes (each
    # counted at least _ITEM_FLOOR, so tiny ones are bounded in number too), so neither
    # a slow broker nor a fast client can make one stream hold more than the budget.
    budget = _Budget(2 * request.app[CTX].settings.max_request_bytes)
    queue: asyncio.Queue[Any] = asyncio.Queue()
    done = object()

    async def fill() -> None:
        try:
            async for item in items:
                await budget.take(_cost(item))
                queue.put_nowait(item)
        finally:
            queue.put_nowait(done)  # never blocks: the budget bounds the queue

    reader = asyncio.create_task(fill())
    try:
        finished = False
        while not finished:
            batch = [await queue.get()]
            while len(batch) < MAX_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            if batch[-1] is done:
                batch.pop()
                finished = True
            if batch:
                replies = await batcher.run(batch)
                budget.give(sum(_cost(item) for item in batch))
                await response.write(b"".join(orjson.dumps(body) + b"\r\n"
                                              for _, body in replies))
        await reader  # re-raises what the reader met (a broken connection)
    except ConnectionResetError:
        # The client went away: what was sent stays sent (at-least-once); no one is left
        # to answer, and the reader goes with it (below).
        log.info("v3 stream to %s: the client closed the connection", batcher.topic)
        return response
    finally:
        if not reader.done():
            reader.cancel()
    await response.write_eof()
    return response


#: The least a parsed request counts for against a stream's byte budget.
_ITEM_FLOOR = 1024


def _cost(item: Any) -> int:
    return max(item.size if isinstance(item, Document) else 0, _ITEM_FLOOR)


class _Budget:
    """Bytes one stream may hold at once: ``take`` waits for room (one taker, the
    reader), ``give`` makes it. An item larger than the budget still passes, alone."""

    def __init__(self, limit: int) -> None:
        self._limit, self._held = limit, 0
        self._freed = asyncio.Event()

    async def take(self, size: int) -> None:
        while self._held and self._held + size > self._limit:
            self._freed.clear()
            await self._freed.wait()
        self._held += size

    def give(self, size: int) -> None:
        self._held -= size
        self._freed.set()


def add_produce_v3_routes(app: web.Application) -> None:
    app[CLUSTER] = ClusterIdCache()
    app.router.add_get("/v3/clusters", list_clusters)
    app.router.add_get("/v3/clusters/{cluster_id}", get_cluster)
    app.router.add_get("/v3/clusters/{cluster_id}/topics/{topic}", get_topic)
    app.router.add_post("/v3/clusters/{cluster_id}/topics/{topic}/records", produce)

