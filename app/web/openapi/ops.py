"""Operations views in the document: probes, figures, status, metrics, verify, sinks.

Shapes follow the views: app/web/health.py, status.py, metrics.py, verify.py, sinks.py.
"""

from __future__ import annotations

from typing import Any

from onepipe.agents.verify import DEFAULT_LIMIT
from onepipe.app.web.openapi.base import error, json_reply, operation, query, ref
from onepipe.app.web.openapi.catalog import TOPIC
from onepipe.app.web.verify import MAX_LIMIT

__all__ = ["PATHS", "SCHEMAS"]

_INT = {"type": "integer"}
_STR = {"type": "string"}
_NULL_INT = {"type": "integer", "nullable": True}
_NULL_STR = {"type": "string", "nullable": True}
_COUNTS = {"type": "object", "additionalProperties": _INT}
_DAY = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


SCHEMAS: dict[str, Any] = {
    "Health": _obj(
        ["status", "registry_offset", "topics"],
        status={"type": "string", "enum": ["ok"]}, registry_offset=_INT, topics=_INT,
        archive=_obj(["records_in", "records_archived", "undecodable", "files",
                      "bytes_written", "positions", "stalled"],
                     records_in=_INT, records_archived=_INT, undecodable=_INT, files=_INT,
                     bytes_written=_INT, positions=_COUNTS,
                     stalled={"type": "object", "additionalProperties": _STR}),
        dedup=_COUNTS, agent_processes=ref("AgentProcesses")),
    "AgentProcesses": {"type": "object", "nullable": True, "description": "With "
                       "ONEPIPE_AGENT_PROCESSES: each agent process, by number.",
                       "additionalProperties": _obj(
                           ["reporting", "report_age_seconds", "restarts"],
                           reporting={"type": "boolean"}, restarts=_INT,
                           report_age_seconds={"type": "number", "nullable": True})},
    "Readiness": _obj(
        ["status", "failed", "checks"],
        status={"type": "string", "enum": ["ready", "not_ready"]},
        failed={"type": "array", "items": _STR},
        checks={"type": "object", "additionalProperties": _obj(
            ["ok"], ok={"type": "boolean"}, detail=_NULL_STR)}),
    "SinkStatus": _obj(
        ["topic", "sink", "kind", "table", "state", "rows_written", "rejected", "lag",
         "total_lag"],
        topic=_STR, sink=_STR, kind=_STR, table=_STR, dsn_env=_STR, where=_NULL_STR,
        state={"type": "string",
               "enum": ["starting", "running", "failing", "paused", "unconfigured"]},
        last_error=_NULL_STR, last_error_at={"type": "number", "nullable": True},
        rows_written=_INT, rejected=_INT, undecodable=_INT, batches=_INT, restarts=_INT,
        positions=_COUNTS, changes={"type": "array", "items": _STR},
        lag={**_COUNTS, "nullable": True, "description": "Per partition, from the lag "
                                                        "monitor's last sample."},
        total_lag=_NULL_INT),
    "Sinks": _obj(["sinks"], sinks={"type": "array", "items": ref("SinkStatus")}),
    "StatusDocument": _obj(
        ["generated_at", "app_id", "monitor", "stuck", "topics", "consumers", "archive",
         "sinks", "last_verify"],
        generated_at=_STR, app_id=_STR,
        monitor=_obj(["enabled", "running", "interval_seconds", "stuck_after_seconds",
                      "groups", "sampled_at", "sample_age_seconds", "error"],
                     enabled={"type": "boolean"}, running={"type": "boolean"},
                     interval_seconds={"type": "number", "nullable": True},
                     stuck_after_seconds={"type": "number", "nullable": True},
                     groups={"type": "array", "items": _STR}, sampled_at=_NULL_STR,
                     sample_age_seconds={"type": "number", "nullable": True},
                     error=_NULL_STR),
        stuck={"type": "boolean"},
        topics={"type": "array", "items": _obj(
            ["topic", "partitions", "subject", "versions", "schema_id", "compatibility",
             "key", "order"],
            topic=_STR, partitions=_INT, subject=_STR,
            versions={"type": "array", "items": _INT}, schema_id=_NULL_INT,
            compatibility=ref("CompatibilityLevel"), key={"type": "array", "items": _STR},
            order=ref("OrderRule"))},
        consumers={"type": "array", "items": _obj(
            ["group", "topic", "lag", "stuck", "partitions"],
            group=_STR, topic=_STR, lag=_INT, stuck={"type": "boolean"},
            partitions={"type": "array", "items": _obj(
                ["partition", "committed", "end", "lag", "stuck", "stalled_for_seconds"],
                partition=_INT, committed=_NULL_INT, end=_INT, lag=_INT,
                stuck={"type": "boolean"}, stalled_for_seconds={"type": "number"})})},
        archive={**_obj(["records_in", "records_archived", "undecodable", "files",
                         "bytes_written", "last_flush_at", "last_flush_records", "stalled"],
                        records_in=_INT, records_archived=_INT, undecodable=_INT, files=_INT,
                        bytes_written=_INT, last_flush_at=_NULL_STR,
                        last_flush_records={"type": "integer", "nullable": True},
                        stalled={"type": "array", "items": _obj(
                            ["topic", "partition", "reason"],
                            topic=_STR, partition=_INT, reason=_STR)}),
                 "nullable": True},
        sinks={"type": "array", "items": ref("SinkStatus")},
        agent_processes=ref("AgentProcesses"),
        last_verify={"type": "object", "nullable": True,
                     "description": "The last verify run's summary; null until one ran."}),
    "VerifyReport": _obj(
        ["topic", "ok", "verified_at", "systems", "skipped", "raw_checked", "days",
         "raw_findings"],
        topic=_STR, ok={"type": "boolean"}, verified_at=_STR,
        systems={"type": "array", "items": _STR},
        skipped={"type": "object", "additionalProperties": _STR},
        raw_checked={"type": "boolean"},
        days={"type": "array", "items": _obj(
            ["day", "ok", "disagreeing", "figures", "checks", "differing_keys",
             "keys_truncated", "raw", "problems"],
            day=_DAY, ok={"type": "boolean"}, disagreeing={"type": "array", "items": _STR},
            figures={"type": "object", "additionalProperties": {"type": "object"}},
            checks={"type": "array", "items": _obj(
                ["figure", "values", "agree"], figure=_STR, values={"type": "object"},
                agree={"type": "boolean"})},
            differing_keys={"type": "array", "items": _obj(
                ["key", "rows"], key={"type": "object"}, rows={"type": "object"})},
            keys_truncated={"type": "boolean"},
            raw={**_obj(["records", "undecodable", "incomplete", "keys"], records=_INT,
                        undecodable=_INT, incomplete=_INT, keys=_INT), "nullable": True},
            problems={"type": "array", "items": _STR})},
        raw_findings={"type": "array", "items": _obj(
            ["kind", "partition", "first", "last", "days", "detail"],
            kind={"type": "string", "enum": ["gap", "overlap", "file"]}, partition=_INT,
            first=_INT, last=_INT, days={"type": "array", "items": _STR}, detail=_STR)}),
}

_STATUS_QUERY = [query("group", _STR, "Only this consumer group (404 when not monitored)."),
                 query("topic", _STR, "Only this topic (404 when neither registered nor "
                                      "monitored).")]
_STATUS_404 = error("The group is not monitored, or the topic is unknown.")


def _view(op_id: str, summary: str, **kw: Any) -> dict[str, Any]:
    return operation(op_id, summary, tag="operations", **kw)


PATHS: dict[str, dict[str, Any]] = {
    "/health": {"get": _view(
        "health", "Figures for people and tests: registry offset, archive, dedup.",
        responses={200: json_reply("Always 200 while the server answers.", ref("Health"))})},
    "/healthz": {"get": _view(
        "healthz", "Liveness: 200 whenever the web server answers.",
        responses={200: json_reply("Alive.", _obj(["status"], status={"type": "string",
                                                                      "enum": ["ok"]}))})},
    "/readyz": {"get": _view(
        "readyz", "Readiness: broker, registry replay, agents' partitions.",
        responses={200: json_reply("Ready.", ref("Readiness")),
                   503: json_reply("Not ready; `failed` names the checks.", ref("Readiness"))})},
    "/metrics": {"get": _view(
        "metrics", "Prometheus text format 0.0.4.",
        responses={200: {"description": "The worker's metric families.",
                         "content": {"text/plain": {"schema": _STR}}}})},
    "/status.json": {"get": _view(
        "statusJson", "Every consumer's progress, topics, archive, sinks, last verify.",
        parameters=_STATUS_QUERY,
        responses={200: json_reply("The status document.", ref("StatusDocument")),
                   404: _STATUS_404})},
    "/status": {"get": _view(
        "statusPage", "The status document as a self-refreshing HTML page.",
        parameters=_STATUS_QUERY,
        responses={200: {"description": "The page.", "content": {"text/html": {"schema": _STR}}},
                   404: _STATUS_404})},
    "/verify/{topic}": {"get": _view(
        "verifyTopic", "Compare the topic's figures across Kafka, the lakes and the sinks.",
        parameters=[TOPIC, query("date", _DAY, "One UTC day."),
                    query("from", _DAY, "First day of a range (with `to`)."),
                    query("to", _DAY, "Last day of a range."),
                    query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                    "default": DEFAULT_LIMIT},
                          "Most differing keys listed per day.")],
        description="200 even when systems disagree: `ok` says so.",
        responses={200: json_reply("The report.", ref("VerifyReport")),
                   400: error("A malformed day, `date` with a range, `from` after `to`, or "
                              "a bad `limit`."),
                   404: error("The topic is not registered."),
                   429: error("A verify of this topic already runs here (`verify_running`), "
                              "or the token's rate limit; retry after `Retry-After`.",
                              retry_after=True),
                   503: error("The lake or Kafka did not answer.")})},
    "/sinks": {"get": _view(
        "sinks", "Every declared online sink as this worker runs it.",
        responses={200: json_reply("The sinks.", ref("Sinks"))})},
    "/openapi.json": {"get": _view(
        "openapi", "This document.",
        responses={200: json_reply("OpenAPI 3.0.3.", {"type": "object"})})},
}
