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
objects as they complete (``json_stream``); at most :data:`MAX_BATCH` x 2 parsed records
wait, and each batch is validated, sent and acknowledged before the next is sent, while
the next is being read. A record longer than ``max_request_bytes`` (or bytes that are not
an object) ends the stream after its error reply, as Confluent stops its stream. Replies
are written as each batch is acknowledged (``\\r\\n`` after each, as Confluent's chunks).
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
from onepipe.app.web.json_stream import Document, JsonObjectSplitter, ObjectTooLarge
from onepipe.app.web.produce_v3_records import (
    V3Record,
    check_key,
    parse_record,
    response_body,
    topic_not_found,
)
from onepipe.schemas.errors import (
    BrokerError,
    FieldError,
    NotFoundError,
    OnepipeError,
    RecordValidationError,
    RequestError,
)
from onepipe.schemas.partitioner import partitions_for
from onepipe.sinks.publish.publisher import TopicWriter

log = logging.getLogger(__name__)

#: Most records validated and sent as one batch (and awaited together).
MAX_BATCH = 1000
_READ_CHUNK = 64 * 1024
_CHARSETS = frozenset({None, "utf-8", "iso-8859-1"})
#: One reply: (HTTP status it would have alone, JSON body).
Reply = tuple[int, dict[str, Any]]


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
    batcher = _Batcher(ctx, topic, cluster_id)
    limit = ctx.settings.max_request_bytes
    if "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        if request.content_length is not None and request.content_length > limit:
            raise RequestError(
                f"The request included a message larger than the maximum message size the "
                f"server can accept: {request.content_length} bytes, limit {limit} "
                "(ONEPIPE_MAX_REQUEST_BYTES); stream the records with chunked encoding",
                status=413, code="payload_too_large")
        splitter = JsonObjectSplitter(limit)
        items = [*splitter.feed(await request.read()), splitter.close()]
        found = [i for i in items if i is not None]
        if not found:
            raise RequestError("Payload error. Request body is empty. Data is required.",
                               status=422, code="empty_body")
        if len(found) == 1:
            status, body = (await batcher.run(found))[0]
            return json_response(body, status=status)
        return await _stream(request, batcher, _listed(found))
    return await _stream(request, batcher, _read(request, JsonObjectSplitter(limit)))


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


async def _stream(request: web.Request, batcher: _Batcher, items: AsyncIterator[Any]
                  ) -> web.StreamResponse:
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    await response.prepare(request)
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=2 * MAX_BATCH)
    done = object()

    async def fill() -> None:
        try:
            async for item in items:
                await queue.put(item)
        finally:
            await queue.put(done)

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
                await response.write(b"".join(orjson.dumps(body) + b"\r\n"
                                              for _, body in replies))
        await reader  # re-raises what the reader met (a broken connection)
    finally:
        if not reader.done():
            reader.cancel()
    await response.write_eof()
    return response


class _Batcher:
    """Validates, sends and answers batches of one stream's requests, in order."""

    def __init__(self, ctx: WorkerContext, topic: str, cluster_id: str) -> None:
        self.ctx, self.topic, self.cluster_id = ctx, topic, cluster_id
        self.position = 0  # index of the next request in the stream

    async def run(self, items: list[Any]) -> list[Reply]:
        replies: list[Reply | None] = [None] * len(items)
        groups: dict[int | str, list[tuple[int, V3Record]]] = {}
        state = self.ctx.registry.state
        for i, item in enumerate(items):
            try:
                record = parse_record(_document(item), self.topic, state)
            except OnepipeError as exc:
                replies[i] = (exc.status, exc.to_json())
                continue
            groups.setdefault(record.version, []).append((i, record))
        ready: list[tuple[int, V3Record, TopicWriter, tuple[bytes | None, bytes]]] = []
        for version, group in groups.items():
            try:
                writer = self.ctx.publisher.writer(self.topic, version)
            except OnepipeError as exc:
                for i, _ in group:
                    replies[i] = (exc.status, exc.to_json())
                continue
            encoded_group = await self._encode(writer, group, replies)
            for (i, record), encoded in zip(group, encoded_group, strict=True):
                if encoded is not None:
                    ready.append((i, record, writer, encoded))
        ready = self._check_keys(ready, replies)
        ready.sort(key=lambda entry: entry[0])  # Kafka gets them in stream order
        if ready:
            await self._send(ready, replies)
        self.position += len(items)
        return [r if r is not None else (500, {}) for r in replies]

    async def _encode(self, writer: TopicWriter, group: list[tuple[int, V3Record]],
                      replies: list[Reply | None]) -> list[tuple[bytes | None, bytes] | None]:
        """Each record's (key, value), None for those whose errors went into ``replies``."""
        try:
            return list(await writer.encode_async([r.data for _, r in group]))
        except OnepipeError:
            pass
        # Some record failed (invalid, or too large once encoded): one at a time, so each
        # error goes to its own record; a rare path, at the batch's cost once more.
        out: list[tuple[bytes | None, bytes] | None] = []
        for i, record in group:
            try:
                out.append(writer.encode([record.data])[0])
                continue
            except RecordValidationError as exc:
                replies[i] = self._invalid(writer, self.position + i, exc.errors)
            except OnepipeError as exc:
                body = exc.to_json()
                body["message"] = f"record {self.position + i} of the stream: {exc.message}"
                replies[i] = (exc.status, body)
            out.append(None)
        return out

    def _invalid(self, writer: TopicWriter, index: int, errors: list[FieldError]) -> Reply:
        """The reply to one invalid record: the native 422 body, for this record alone."""
        body = RecordValidationError(errors).to_json()
        body["message"] = (
            f"record {index} of the stream does not match the schema of {self.topic!r} "
            f"(version {writer.version}): {errors[0].path or '(record)'}: {errors[0].reason}"
            "; it was not produced")
        body["errors"] = [{**e.to_json(), "index": index} for e in errors]
        return (422, body)

    def _check_keys(self, ready: list[Any], replies: list[Reply | None]) -> list[Any]:
        partitions = self.ctx.registry.state.topics[self.topic].partitions
        kept = []
        for entry in ready:
            i, record, writer, (key, _) = entry
            fields = writer.key_encoder.fields if writer.key_encoder is not None else ()
            where = None
            if record.partition_id is not None and key is not None:
                where = partitions_for([key], partitions)[0]
            reason = check_key(record, fields, key, where, self.topic)
            if reason is None:
                kept.append(entry)
            else:
                replies[i] = (422, RequestError(reason, 422, "key_mismatch").to_json())
        return kept

    async def _send(self, ready: list[Any], replies: list[Reply | None]) -> None:
        headers = [r.headers for _, r, _, _ in ready]
        stamps = [r.timestamp_ms for _, r, _, _ in ready]
        try:
            deliveries = await self.ctx.publisher.send_encoded(
                self.topic, [kv for _, _, _, kv in ready],
                headers=headers if any(headers) else None,
                timestamps_ms=stamps if any(s is not None for s in stamps) else None)
        except OnepipeError as exc:
            for i, _, _, _ in ready:
                replies[i] = (exc.status, exc.to_json())
            return
        for (i, record, writer, (key, value)), d in zip(ready, deliveries, strict=True):
            replies[i] = (200, response_body(
                self.cluster_id, self.topic, d.partition, d.offset, d.timestamp, key,
                (record.key or {}).get("type"), len(value), writer.schema_id, writer.version))


def _document(item: Any) -> Any:
    """The request object of a stream item; raises the item's error."""
    if isinstance(item, Document):
        if item.error is not None:
            raise item.error
        return item.value
    if isinstance(item, ObjectTooLarge):
        raise RequestError(
            f"Produce request size is larger than allowed threshold: more than {item.size - 1}"
            f" bytes in one record, limit {item.limit} (ONEPIPE_MAX_REQUEST_BYTES); the "
            "stream ends here", status=413, code="record_too_large")
    raise RequestError(f"Error processing JSON: expected a JSON object, found "
                       f"{item.found!r}; the stream ends here", code="malformed_json")


def add_produce_v3_routes(app: web.Application) -> None:
    app[CLUSTER] = ClusterIdCache()
    app.router.add_get("/v3/clusters", list_clusters)
    app.router.add_get("/v3/clusters/{cluster_id}", get_cluster)
    app.router.add_get("/v3/clusters/{cluster_id}/topics/{topic}", get_topic)
    app.router.add_post("/v3/clusters/{cluster_id}/topics/{topic}/records", produce)

