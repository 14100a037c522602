"""ONEPIPE_LOG_FORMAT=json: one JSON object per line, Kafka coordinates as fields."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import aiohttp

from onepipe.app.log_format import JsonFormatter
from tests.fixtures.services import unique, wait_for
from tests.fixtures.topics import create_topic
from tests.fixtures.worker_process import WorkerProcess

SCHEMA = {"type": "record", "name": "Tick", "fields": [{"name": "n", "type": "long"}]}
FIELDS = {"time", "level", "logger", "message"}


def test_a_record_is_one_object_with_its_extras_and_exception() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(unique("test.json"))
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("commit of %s[%d]@%d failed", "t", 2, 41,
                   extra={"topic": "t", "partition": 2, "offset": 41, "path": Path("/x")})
    try:
        int("bad\nvalue")
    except ValueError:
        logger.exception("it failed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "commit of t[2]@41 failed"
    assert (first["level"], first["logger"]) == ("WARNING", logger.name)
    assert (first["topic"], first["partition"], first["offset"]) == ("t", 2, 41)
    assert first["path"] == "/x" and first["time"].endswith("Z")
    assert "exception" not in first
    assert second["message"] == "it failed"
    assert "Traceback" in second["exception"]
    assert "ValueError: invalid literal" in second["exception"]


async def test_a_worker_writes_json_lines_with_kafka_coordinates(broker: str,
                                                                 tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEPIPE_")}
    env.update(ONEPIPE_BROKER=broker, ONEPIPE_REGISTRY_TOPIC=unique("_registry"),
               ONEPIPE_IDEMPOTENT_PRODUCER="false", ONEPIPE_DATA_DIR=str(tmp_path / "data"),
               ONEPIPE_SESSION_TIMEOUT="6", ONEPIPE_REBALANCE_TIMEOUT="6",
               ONEPIPE_APP_ID=unique("onepipe"), ONEPIPE_LOG_FORMAT="json",
               ONEPIPE_DEDUP_ENABLED="false", ONEPIPE_CHECKSUMS_ENABLED="false",
               ONEPIPE_SINKS_ENABLED="false", ONEPIPE_COMPACT_WORKERS_ENABLED="false")
    log = tmp_path / "worker.log"
    worker = WorkerProcess(env, log)
    topic = unique("logged")
    try:
        await wait_for(worker.healthy, timeout=60, what="worker")
        async with aiohttp.ClientSession(base_url=worker.url) as http:
            await create_topic(http, topic, SCHEMA, partitions=1)

        def lines() -> list[dict[str, Any]]:
            return [json.loads(line) for line in log.read_text().splitlines() if line]

        # The archive agent says where it starts reading the new topic, as fields.
        await wait_for(lambda: any(line.get("topic") == topic for line in lines()),
                       timeout=60, what="a log line with the topic as a field")
    finally:
        worker.stop()
    written = log.read_text().splitlines()
    assert written
    parsed = [json.loads(line) for line in written]  # every line, the stop's included
    assert all(FIELDS <= set(line) for line in parsed)
    positioned = next(line for line in parsed if line.get("topic") == topic)
    assert positioned["partition"] == 0 and positioned["logger"].startswith("onepipe.")
