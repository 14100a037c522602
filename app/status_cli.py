"""``onepipe status``: every consumer's progress, read from a running worker.

It fetches ``GET /status.json`` from the worker (``--url``; default
``http://ONEPIPE_WEB_HOST:ONEPIPE_WEB_PORT``) and prints one row per consumer group,
topic and partition: committed offset, end offset, lag, and STUCK when the partition's
lag has not shrunk for ``ONEPIPE_STUCK_AFTER_SECONDS`` while records kept arriving. Archive
partitions the worker does not archive (their log was reset) are printed first, with
what to do, then a warning for each agent process of the worker that is not reporting.

Exit status, for scripts and health checks:
  0  every monitored consumer is progressing (or the worker's lag monitor is off)
  1  at least one partition is stuck, or not archived (stalled)
  2  the worker could not be reached, or did not answer with a status document
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from onepipe.app.settings import load_settings

EXIT_OK = 0
EXIT_STUCK = 1
EXIT_UNREACHABLE = 2


def add_status_command(subparsers: Any) -> None:
    """Add ``status`` to the ``onepipe`` sub-commands (an argparse subparsers object)."""
    status = subparsers.add_parser(
        "status", help="consumer lag per partition from a running worker (exit 1: stuck)",
        description="Every consumer's lag per partition, read from a running worker's "
        "/status.json.", epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    status.add_argument("--url", default=None,
                        help="the worker's HTTP address, e.g. http://10.0.0.5:8080 (default: "
                        "ONEPIPE_WEB_HOST and ONEPIPE_WEB_PORT)")
    status.add_argument("--group", default=None, help="only this consumer group")
    status.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for the worker (default 5)")


def default_url() -> str:
    settings = load_settings()
    host = settings.web_host
    # A worker listening on every interface is reached through loopback from here.
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a comparison, not a bind
        host = "127.0.0.1"
    return f"http://{host}:{settings.web_port}"


def api_token() -> str | None:
    """ONEPIPE_TOKEN: the token CLI commands send to a worker whose reads need one."""
    token = load_settings().token
    return token.get_secret_value() if token is not None else None


def fetch_status(base_url: str, *, group: str | None = None, timeout: float = 5.0,
                 token: str | None = None) -> dict[str, Any]:
    """The worker's status document; ``StatusUnavailable`` with the reason otherwise."""
    query = {"group": group} if group is not None else {}
    return fetch_document(base_url, "/status.json", "consumers", query=query, timeout=timeout,
                          token=token)


def fetch_document(base_url: str, path: str, expect: str, *,
                   query: dict[str, str] | None = None, timeout: float = 5.0,
                   token: str | None = None) -> dict[str, Any]:
    """A JSON document of the worker's API holding key ``expect``; ``StatusUnavailable``
    saying why (unreachable, an error answer, not a onepipe worker) otherwise. ``token``
    goes as ``Authorization: Bearer``."""
    url = base_url.rstrip("/") + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) URL
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
            body = reply.read()
    except urllib.error.HTTPError as exc:
        detail = exc.reason
        try:
            detail = json.loads(exc.read())["message"]
        except (ValueError, KeyError, TypeError):
            pass
        if exc.code in (401, 403):
            detail += (" (set ONEPIPE_TOKEN to a valid token of this worker)" if not token
                       else " (ONEPIPE_TOKEN was sent)")
        raise StatusUnavailable(f"{url} answered HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StatusUnavailable(
            f"cannot reach the worker at {url}: {reason}; is `onepipe worker` running "
            "there? Pass --url, or set ONEPIPE_WEB_HOST/ONEPIPE_WEB_PORT") from exc
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise StatusUnavailable(f"{url} did not answer JSON ({exc}); is it a onepipe "
                                "worker?") from exc
    if not isinstance(document, dict) or expect not in document:
        raise StatusUnavailable(f"{url} did not answer the expected document; is it a "
                                "onepipe worker?")
    return document


class StatusUnavailable(Exception):  # noqa: N818 - reads as a condition in `except`
    """The worker's status could not be read; the message says why and what to try."""


def run_status(args: argparse.Namespace) -> int:
    """Print the status table; return the exit status documented in the module."""
    from rich.console import Console
    from rich.table import Table

    url = args.url or default_url()
    try:
        doc = fetch_status(url, group=args.group, timeout=args.timeout, token=api_token())
    except StatusUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    console = Console()
    monitor = doc.get("monitor", {})
    head = f"worker {url} · app {doc.get('app_id')}"
    if monitor.get("sampled_at"):
        head += f" · sampled {monitor['sampled_at']} ({monitor.get('sample_age_seconds')}s ago)"
    console.print(head, markup=False, highlight=False)
    stalled = (doc.get("archive") or {}).get("stalled") or []
    for s in stalled:  # whole, never cut: the reason says what to do
        print(f"STALLED archive {s['topic']}[{s['partition']}]: {s['reason']}")
    for line in agent_process_warnings(doc):
        print(f"warning: {line}")
    if not monitor.get("enabled"):
        print("the worker's lag monitor is off (ONEPIPE_MONITOR_INTERVAL_SECONDS=0); "
              "no lag to show")
        if stalled:
            print(_stalled_summary(stalled))
        return EXIT_STUCK if stalled else EXIT_OK
    if monitor.get("error"):
        print(f"warning: the last lag sample failed: {monitor['error']}", file=sys.stderr)
    table = Table(title="consumer lag")
    for column in ("group", "topic", "partition", "committed", "end", "lag", "stuck"):
        named = column in ("group", "topic")
        # Names are folded onto more lines rather than cut: a truncated name is useless.
        table.add_column(column, justify="left" if named or column == "stuck" else "right",
                         overflow="fold" if named else "ellipsis")
    stuck = 0
    for consumer in doc["consumers"]:
        for p in consumer["partitions"]:
            stuck += bool(p["stuck"])
            flag = f"STUCK {round(p['stalled_for_seconds'])}s" if p["stuck"] else ""
            committed = "-" if p["committed"] is None else f"{p['committed']:,}"
            table.add_row(consumer["group"], consumer["topic"], str(p["partition"]), committed,
                          f"{p['end']:,}", f"{p['lag']:,}", flag,
                          style="bold red" if p["stuck"] else None)
    if table.row_count:
        console.print(table)
    else:
        print("no consumer progress yet (no monitored group reads an existing topic)")
    if stuck:
        print(f"{stuck} partition(s) STUCK: lag has not shrunk for "
              f"{monitor.get('stuck_after_seconds')}s while records kept arriving")
    if stalled:
        print(_stalled_summary(stalled))
    if stuck or stalled:
        return EXIT_STUCK
    print("all consumers progressing")
    return EXIT_OK


def _stalled_summary(stalled: list[dict[str, Any]]) -> str:
    return (f"{len(stalled)} archive partition(s) STALLED: their log was reset and they are "
            "not archived (what to do: above)")


def agent_process_warnings(doc: dict[str, Any]) -> list[str]:
    """A line for each agent process that is not reporting, from a status document (this
    command and the status page, onepipe.app.web.status, print them)."""
    return [f"Agent process {index} is not reporting (starting, or it exited: started again "
            f"{p['restarts']} time(s) so far, the worker's log says why); meanwhile its batch "
            "agents' partitions are with the groups' other members, or wait for it"
            for index, p in (doc.get("agent_processes") or {}).items() if not p["reporting"]]
