"""The verify report for people and programs: ``GET /verify/{topic}`` and the CLI's tables.

``GET /verify/{topic}?date=D`` (or ``?from=D&to=D``, or nothing for every day; ``limit``
caps the differing keys listed per day, default 20) runs onepipe.agents.verify.compare
against this worker's lake and broker and answers the report as JSON: **200 even when
systems disagree** (``ok`` says so: the request succeeded, the data did not), 404 for a
topic the registry does not know, 400 for bad dates or limit. The report is also stored in
``ctx.last_verify`` for ``/status`` (as
:meth:`~onepipe.agents.verify.compare.VerifyReport.summary`: the page shows flat fields;
the full report is this response).

:func:`print_report` renders the same report for a terminal with rich: per day one table
of system x figure (rows, keys, each sum, checksum) with disagreeing figures marked, the
raw lake's counts, the differing keys (fields decoded, each system's row hash or
"missing"), then the raw lake's gaps and overlaps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web
from rich.console import Console
from rich.table import Table

from onepipe.agents.verify import DEFAULT_LIMIT, VerifyReport, day_range, verify_registered
from onepipe.app.context import WorkerContext
from onepipe.app.web.http import CTX, json_response
from onepipe.schemas.errors import NotFoundError, RequestError

__all__ = ["add_verify_routes", "print_report", "run_verify", "verify_view"]

#: The most differing keys a request may ask for per day.
MAX_LIMIT = 1000


async def run_verify(ctx: WorkerContext, topic: str, *, date: str | None = None,
                     first: str | None = None, last: str | None = None,
                     limit: int = DEFAULT_LIMIT) -> VerifyReport:
    """Verify ``topic`` with this worker's lake and broker; remember it for /status."""
    try:
        days = day_range(date, first, last)
    except ValueError as exc:
        raise RequestError(str(exc), code="invalid_days") from exc
    if topic not in ctx.registry.state.topics:
        raise NotFoundError(f"topic {topic!r} is not registered; GET /topics lists the "
                            "registered ones", 404)
    settings = ctx.settings
    async with settings.open_lake() as lake:
        report = await verify_registered(
            topic, ctx.registry.state, lake=lake, kafka=settings.kafka, days=days,
            cache_dir=cache_dir(settings.data_dir), limit=limit,
            catalog_uri=settings.resolved_catalog_uri)
    ctx.last_verify.result = report.summary()
    return report


def cache_dir(data_dir: Path) -> Path:
    """Where S3 lake files are cached while verifying (shared with the compactor)."""
    return data_dir / "compact" / "cache"


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise RequestError(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {text!r}",
                           code="invalid_limit")
    return int(text)


#: Topics a verify is running for, per web app: one scan per topic at a time.
RUNNING = web.AppKey("onepipe-verify-running", set[str])


async def verify_view(request: web.Request) -> web.Response:
    query = request.query
    topic = request.match_info["topic"]
    limit = _limit(query.get("limit"))
    running = request.app[RUNNING]
    # A verify reads a topic's whole lake and log: a second one beside it would only
    # halve both, and a loop of them would hold the worker's disk and network.
    if topic in running:
        busy = RequestError(f"a verify of {topic!r} is already running on this worker; "
                            "retry when it ends", status=429, code="verify_running")
        busy.retry_after = 5
        raise busy
    running.add(topic)
    try:
        report = await run_verify(request.app[CTX], topic, date=query.get("date"),
                                  first=query.get("from"), last=query.get("to"), limit=limit)
    finally:
        running.discard(topic)
    return json_response(report.to_json())


def add_verify_routes(app: web.Application) -> None:
    app[RUNNING] = set()
    app.router.add_get("/verify/{topic}", verify_view)


# ------------------------------------------------------------------ terminal


def print_report(report: VerifyReport, console: Console | None = None) -> None:
    """Tables of ``report`` for people (see the module docstring)."""
    console = console or Console()
    data = report.to_json()
    verdict = "[green]all systems agree[/green]" if report.ok else "[red]DISAGREEMENT[/red]"
    console.print(f"verify {report.topic}: {verdict} "
                  f"(systems: {', '.join(report.systems) or 'none'})")
    for system, why in report.skipped.items():
        console.print(f"  {system} skipped: {why}")
    if not data["days"]:
        console.print("  no day holds any row in any system")
    for day in data["days"]:
        _print_day(console, report, day)
    if report.raw_findings:
        console.print("[red]raw lake findings:[/red]")
        for finding in report.raw_findings:
            console.print(f"  {finding.kind} in partition {finding.partition}, offsets "
                          f"{finding.first}-{finding.last}, day(s) {', '.join(finding.days)}: "
                          f"{finding.detail}")


def _print_day(console: Console, report: VerifyReport, day: dict[str, Any]) -> None:
    mark = "[green]ok[/green]" if day["ok"] else "[red]differs[/red]"
    table = Table(title=f"{report.topic} {day['day']}: {mark}", title_justify="left")
    table.add_column("system")
    checks = day["checks"]
    for check in checks:
        name = check["figure"] if check["agree"] else f"[red]{check['figure']} ≠[/red]"
        table.add_column(name, justify="right")
    for system in report.systems:
        cells = [_cell(check["values"].get(system), check["agree"]) for check in checks]
        table.add_row(system, *cells)
    console.print(table)
    raw = day["raw"]
    if raw is not None:
        console.print(f"  raw lake: {raw['records']} record(s), {raw['undecodable']} "
                      f"undecodable, {raw['incomplete']} without key or time, "
                      f"{raw['keys']} distinct key(s)")
    if day["differing_keys"]:
        keys = Table(title=f"differing keys on {day['day']}"
                     + (" (more exist)" if day["keys_truncated"] else ""),
                     title_justify="left")
        keys.add_column("key")
        for system in report.systems:
            keys.add_column(system)
        for item in day["differing_keys"]:
            shown = ", ".join(f"{k}={v}" for k, v in item["key"].items())
            keys.add_row(shown, *(_rows(item["rows"].get(s)) for s in report.systems))
        console.print(keys)
    for problem in day["problems"]:
        console.print(f"  [red]{problem}[/red]")


def _cell(value: Any, agree: bool) -> str:
    text = "" if value is None else str(value)
    return text if agree else f"[red]{text}[/red]"


def _rows(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(value)
    return f"[red]{value}[/red]"
