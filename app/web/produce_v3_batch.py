"""The records of one v3 produce request stream, in batches: each request read as a
ProduceRequest, validated and encoded by the topic's writer like the native endpoint,
checked against its derived key and partition, sent in stream order and answered with a
ProduceResponse or its own error (onepipe.app.web.produce_v3 feeds and streams them).
"""

from __future__ import annotations

from typing import Any

from onepipe.app.context import WorkerContext
from onepipe.app.web.json_stream import Document, ObjectTooLarge
from onepipe.app.web.produce_v3_records import (
    V3Record,
    check_key,
    parse_record,
    response_body,
)
from onepipe.schemas.errors import (
    FieldError,
    OnepipeError,
    RecordValidationError,
    RequestError,
)
from onepipe.schemas.partitioner import partitions_for
from onepipe.sinks.publish.publisher import TopicWriter

#: Most records validated and sent as one batch (and awaited together).
MAX_BATCH = 1000
#: One reply: (HTTP status it would have alone, JSON body).
Reply = tuple[int, dict[str, Any]]


class Batcher:
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
                record = parse_record(document(item), self.topic, state)
            except OnepipeError as exc:
                replies[i] = (exc.status, exc.to_json())
                continue
            groups.setdefault(record.version, []).append((i, record))
        ready: list[tuple[int, V3Record, TopicWriter, tuple[bytes | None, bytes]]] = []
        for version, group in groups.items():
            try:
                writer = await self.ctx.publisher.writer_async(self.topic, version)
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
            landed = await self.ctx.publisher.send_landed(
                self.topic, [kv for _, _, _, kv in ready],
                headers=headers if any(headers) else None,
                timestamps_ms=stamps if any(s is not None for s in stamps) else None)
        except OnepipeError as exc:
            for i, _, _, _ in ready:
                replies[i] = (exc.status, exc.to_json())
            return
        for (i, record, writer, (key, value)), (partition, offset, stamp) in zip(
                ready, landed, strict=True):
            replies[i] = (200, response_body(
                self.cluster_id, self.topic, partition, offset, stamp, key,
                (record.key or {}).get("type"), len(value), writer.schema_id, writer.version))


def document(item: Any) -> Any:
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
