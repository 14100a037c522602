"""``onepipe sinks`` and ``onepipe dlq ls``: the online sinks, and what they refused.

``onepipe sinks`` prints every declared sink as a running worker sees it (``GET /sinks``:
state, position committed in its database, lag, rows written, rows refused, last error).
Exit status: 0 when every sink runs, 1 when any is failing, paused or unconfigured, 2
when the worker cannot be reached.

``onepipe dlq ls TOPIC`` reads ``<topic>.dlq`` from Kafka (no worker needed) and prints
each refused row: the sink, the reason, where it came from (``onepipe.source``: the
source topic's partition and offset; ``onepipe.unique``: ``<topic>.unique``'s) and its key.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from aiokafka import ConsumerRecord

from onepipe.app.settings import Settings
from onepipe.app.status_cli import StatusUnavailable, api_token, default_url, fetch_document
from onepipe.schemas.topic_names import dlq_topic
from onepipe.tables.kafka import read_topic

__all__ = ["add_sink_commands", "run_dlq", "run_sinks"]

EXIT_OK, EXIT_NOT_RUNNING, EXIT_UNREACHABLE = 0, 1, 2


def add_sink_commands(subparsers: Any) -> None:
    """Add ``sinks`` and ``dlq`` to the ``onepipe`` sub-commands."""
    sinks = subparsers.add_parser(
        "sinks", help="online sinks from a running worker (exit 1: one is not running)",
        description=(__doc__ or "").split("\n\n", 2)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sinks.add_argument("--url", default=None, help="the worker's HTTP address (default: "
                       "ONEPIPE_WEB_HOST and ONEPIPE_WEB_PORT)")
    sinks.add_argument("--timeout", type=float, default=5.0,
                       help="seconds to wait for the worker (default 5)")
    dlq = subparsers.add_parser("dlq", help="rows online sinks refused (<topic>.dlq)")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_ls = dlq_sub.add_parser("ls", help="list a topic's dead letters")
    dlq_ls.add_argument("topic")


def run_sinks(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    url = args.url or default_url()
    try:
        doc = fetch_document(url, "/sinks", "sinks", timeout=args.timeout, token=api_token())
    except StatusUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    sinks: list[dict[str, Any]] = doc["sinks"]
    if not sinks:
        print("no online sink is declared (or the worker runs with "
              "ONEPIPE_SINKS_ENABLED=false, or its agent processes have not reported yet)")
        return EXIT_OK
    table = Table(title=f"online sinks of {url}")
    for column in ("topic", "sink", "kind", "table", "state", "position", "lag", "rows",
                   "refused", "last error"):
        table.add_column(column, overflow="fold",
                         justify="right" if column in ("lag", "rows", "refused") else "left")
    bad = 0
    for s in sinks:
        running = s["state"] in ("running", "starting")
        bad += not running
        position = " ".join(f"{p}:{o}" for p, o in s["positions"].items()) or "-"
        lag = "-" if s["total_lag"] is None else f"{s['total_lag']:,}"
        table.add_row(s["topic"], s["sink"], s["kind"], s["table"], s["state"], position, lag,
                      f"{s['rows_written']:,}", f"{s['rejected']:,}", s["last_error"] or "",
                      style=None if running else "bold red")
    Console().print(table)
    return EXIT_NOT_RUNNING if bad else EXIT_OK


def run_dlq(settings: Settings, topic: str) -> int:
    records: list[ConsumerRecord[Any, Any]] = []
    found = asyncio.run(read_topic(settings.kafka, dlq_topic(topic), records.extend,
                                   client_id="onepipe-dlq"))
    if not found or not records:
        print(f"{dlq_topic(topic)}: no dead letters")
        return EXIT_OK
    for r in records:
        headers = {k: v.decode(errors="replace") for k, v in r.headers}
        key = r.key.hex() if r.key is not None else "-"
        print(f"{r.topic}[{r.partition}]@{r.offset} sink={headers.get('onepipe.sink', '?')} "
              f"source={headers.get('onepipe.source', '?')} "
              f"unique={headers.get('onepipe.unique', '?')} key={key}\n"
              f"    {headers.get('onepipe.reason', '(no reason given)')}")
    print(f"{len(records)} dead letter(s) in {dlq_topic(topic)}")
    return EXIT_OK
