"""``GET /status.json`` and ``GET /status``: every consumer's progress, as data and as a page.

Contract:
- Both are built from the same document (:func:`status_document`): the registered topics
  with their schema subject, versions and effective compatibility; each monitored consumer
  group's committed offset, end offset, lag and stuck flag per partition (from the lag
  monitor's last sample: no Kafka request per view); the archive agent's counters and its
  stalled partitions (``archive.stalled``: topic, partition and a reason saying what to
  do; the page shows them in red); with agent processes, whether each reports (the page
  warns of one that does not); and the last verify result (``null`` until one ran).
- ``?group=G`` and ``?topic=T`` narrow the consumers shown; an unknown group or topic is a
  404 JSON error naming what exists, never a 500.
- The page is server-rendered HTML with inline CSS and no script: lag per partition as a
  horizontal bar (width proportional to the largest lag shown), stuck rows in red. Every
  value is HTML-escaped. It reloads itself every few seconds (``<meta refresh>``).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from aiohttp import web

from onepipe.app.context import WorkerContext
from onepipe.app.status_cli import agent_process_warnings
from onepipe.app.web.http import CTX, json_response
from onepipe.app.web.sinks import sink_document
from onepipe.app.web.worker_view import worker_archive
from onepipe.schemas.errors import NotFoundError
from onepipe.schemas.metadata import metadata_to_dict
from onepipe.schemas.topic_names import value_subject


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _topics(ctx: WorkerContext) -> list[dict[str, Any]]:
    state = ctx.registry.state
    rows = []
    for topic in sorted(state.topics):
        meta = state.topics[topic]
        subject = value_subject(topic)
        versions = state.versions(subject) if subject in state.subjects else []
        latest = state.version(subject, "latest") if versions else None
        rows.append({
            "topic": topic,
            "partitions": meta.partitions,
            "subject": subject,
            "versions": versions,
            "schema_id": latest.schema_id if latest is not None else None,
            "compatibility": state.compatibility(subject).value,
            "key": list(meta.key),
            "order": metadata_to_dict(meta)["order"],
        })
    return rows


def _consumers(ctx: WorkerContext, group: str | None, topic: str | None
               ) -> list[dict[str, Any]]:
    monitor = ctx.lag_monitor
    if monitor is None:
        return []
    rows = [p for p in monitor.snapshot.partitions
            if (group is None or p.group == group) and (topic is None or p.topic == topic)]
    consumers = []
    for (g, t), parts in groupby(rows, key=lambda p: (p.group, p.topic)):
        shown = list(parts)
        partitions = [{"partition": p.partition, "committed": p.committed, "end": p.end,
                       "lag": p.lag, "stuck": p.stuck,
                       "stalled_for_seconds": round(p.stalled_for, 1)} for p in shown]
        consumers.append({"group": g, "topic": t, "lag": sum(p.lag for p in shown),
                          "stuck": any(p.stuck for p in shown), "partitions": partitions})
    return consumers


def _archive(ctx: WorkerContext) -> dict[str, Any] | None:
    m = worker_archive(ctx)  # every process's
    if m is None:
        return None
    return {"records_in": m.records_in, "records_archived": m.records_archived,
            "undecodable": m.undecodable, "files": m.files, "bytes_written": m.bytes_written,
            "last_flush_at": _iso(m.last_flush_at) if m.last_flush_at else None,
            "last_flush_records": m.last_flush_records,
            "stalled": [{"topic": tp.topic, "partition": tp.partition, "reason": reason}
                        for tp, reason in sorted(m.stalled.items())]}


def status_document(ctx: WorkerContext, *, group: str | None = None,
                    topic: str | None = None) -> dict[str, Any]:
    """The status as JSON data; NotFoundError for a group or topic nobody knows."""
    monitor = ctx.lag_monitor
    if group is not None:
        known = list(monitor.snapshot.groups) if monitor is not None else []
        if group not in known:
            hint = (f"monitored groups: {known}" if monitor is not None else
                    "the lag monitor is off (ONEPIPE_MONITOR_INTERVAL_SECONDS=0)")
            raise NotFoundError(f"consumer group {group!r} is not monitored here; {hint}", 404)
    if topic is not None:
        shown = set(ctx.registry.state.topics)
        if monitor is not None:
            shown |= {p.topic for p in monitor.snapshot.partitions}
        if topic not in shown:
            raise NotFoundError(f"topic {topic!r} is neither registered nor monitored; "
                                "GET /topics lists the registered ones", 404)
    snapshot = monitor.snapshot if monitor is not None else None
    now = datetime.now(UTC)
    sampled_at = snapshot.sampled_at if snapshot is not None else None
    consumers = _consumers(ctx, group, topic)
    return {
        "generated_at": now.isoformat(timespec="seconds"),
        "app_id": ctx.settings.app_id,
        "monitor": {
            "enabled": monitor is not None,
            "running": monitor.running if monitor is not None else False,
            "interval_seconds": monitor.interval if monitor is not None else None,
            "stuck_after_seconds": monitor.stuck_after if monitor is not None else None,
            "groups": list(snapshot.groups) if snapshot is not None else [],
            "sampled_at": _iso(sampled_at),
            "sample_age_seconds": (round(now.timestamp() - sampled_at, 1)
                                   if sampled_at is not None else None),
            "error": snapshot.error if snapshot is not None else None,
        },
        "stuck": any(c["stuck"] for c in consumers),
        "topics": [t for t in _topics(ctx) if topic is None or t["topic"] == topic],
        "consumers": consumers,
        "archive": _archive(ctx),
        "sinks": sink_document(ctx),
        # Whether each agent process runs (ONEPIPE_AGENT_PROCESSES); null without any.
        "agent_processes": ctx.processes.health() if ctx.processes is not None else None,
        "last_verify": ctx.last_verify.result,
    }


def _query(request: web.Request) -> dict[str, str | None]:
    return {"group": request.query.get("group") or None,
            "topic": request.query.get("topic") or None}


async def status_json(request: web.Request) -> web.Response:
    return json_response(status_document(request.app[CTX], **_query(request)))


async def status_page(request: web.Request) -> web.Response:
    doc = status_document(request.app[CTX], **_query(request))
    return web.Response(text=render_status_html(doc), content_type="text/html",
                        charset="utf-8")


def add_status_routes(app: web.Application) -> None:
    app.router.add_get("/status.json", status_json)
    app.router.add_get("/status", status_page)


# ---------------------------------------------------------------------- HTML

def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _n(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


_CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
 color:#1f2933;background:#f3f5f8}
header{background:#1f2a44;color:#fff;padding:18px 32px;display:flex;align-items:center;gap:18px}
header h1{font-size:20px;margin:0;font-weight:600}
header .meta{color:#b8c2d6;font-size:13px}
.badge{display:inline-block;padding:4px 12px;border-radius:999px;font-weight:600;font-size:13px}
.ok{background:#d1f2dc;color:#146c2e}.bad{background:#fde0e0;color:#a11a1a}
.off{background:#e4e7ec;color:#4b5563}
main{padding:20px 32px;display:grid;gap:20px}
section{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(16,24,40,.12);
 padding:16px 20px}
h2{font-size:16px;margin:0 0 12px}h3{font-size:14px;margin:14px 0 6px;color:#374151}
table{border-collapse:collapse;width:100%}
th{text-align:left;font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:#6b7280;
 border-bottom:1px solid #e5e7eb;padding:6px 8px}
td{padding:6px 8px;border-bottom:1px solid #f0f2f5;vertical-align:middle}
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.stuck td{background:#fff1f1}
table.lag{table-layout:fixed}
h3 .sum{font-weight:400;color:#6b7280;margin-left:8px}
.track{background:#eef1f5;border-radius:4px;height:14px;width:100%;min-width:160px}
.lagbar{background:#3b82f6;height:14px;border-radius:4px;min-width:3px}
tr.stuck .lagbar{background:#dc2626}
.caught{color:#15803d;font-size:12px}
.tag{background:#dc2626;color:#fff;border-radius:4px;padding:1px 6px;font-size:11px;
 font-weight:700;margin-left:6px}
.warn{background:#fff7e6;border:1px solid #f5c26b;border-radius:8px;padding:8px 12px}
.muted{color:#6b7280}code{font-size:12px;background:#f3f4f6;padding:1px 4px;border-radius:3px}
"""


def _consumers_html(doc: dict[str, Any]) -> str:
    monitor = doc["monitor"]
    if not monitor["enabled"]:
        return ('<p class="muted">The lag monitor is off '
                "(<code>ONEPIPE_MONITOR_INTERVAL_SECONDS=0</code>).</p>")
    consumers = doc["consumers"]
    if not consumers:
        return ('<p class="muted">No consumer progress yet: no monitored group reads a topic '
                "that exists, or no sample has been taken.</p>")
    widest = max((p["lag"] for c in consumers for p in c["partitions"]), default=0) or 1
    parts = []
    for group, grouped in groupby(consumers, key=lambda c: c["group"]):
        items = list(grouped)
        total = sum(c["lag"] for c in items)
        stuck_parts = sum(1 for c in items for p in c["partitions"] if p["stuck"])
        summary = f"lag {total:,}" + (f" · {stuck_parts} stuck" if stuck_parts else "")
        rows = []
        for consumer in items:
            for p in consumer["partitions"]:
                stuck = p["stuck"]
                if p["lag"]:
                    width = max(0.5, 100.0 * p["lag"] / widest)
                    bar = (f'<div class="track"><div class="lagbar" style="width:{width:.1f}%" '
                           f'data-group="{_e(group)}" data-topic="{_e(consumer["topic"])}" '
                           f'data-partition="{_e(p["partition"])}" data-lag="{_e(p["lag"])}">'
                           "</div></div>")
                else:
                    bar = '<span class="caught">caught up</span>'
                tag = (f'<span class="tag">STUCK {_e(round(p["stalled_for_seconds"]))}s</span>'
                       if stuck else "")
                rows.append(
                    f'<tr class="{"stuck" if stuck else ""}"><td>{_e(consumer["topic"])}{tag}'
                    f'</td><td class="num">{_e(p["partition"])}</td>'
                    f'<td class="num">{_n(p["committed"])}</td><td class="num">{_n(p["end"])}'
                    f'</td><td class="num">{_n(p["lag"])}</td><td>{bar}</td>'
                    "</tr>")
        parts.append(
            f'<h3>{_e(group)}<span class="sum">{_e(summary)}</span></h3><table class="lag">'
            '<colgroup><col style="width:30%"><col style="width:9%"><col style="width:11%">'
            '<col style="width:11%"><col style="width:9%"><col style="width:30%"></colgroup>'
            '<thead><tr><th>topic</th><th class="num">partition</th><th class="num">committed'
            '</th><th class="num">end</th><th class="num">lag</th><th>lag (bar)</th></tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table>")
    return "".join(parts)


def _topics_html(doc: dict[str, Any]) -> str:
    if not doc["topics"]:
        return '<p class="muted">No topic is registered yet (<code>onepipe apply</code>).</p>'
    rows = []
    for t in doc["topics"]:
        order = t["order"] or {}
        order_text = " ".join(f"{k}={v}" for k, v in sorted(order.items())) if isinstance(
            order, dict) else str(order)
        versions = ", ".join(str(v) for v in t["versions"]) or "—"
        rows.append(
            f'<tr><td><b>{_e(t["topic"])}</b></td><td class="num">{_e(t["partitions"])}</td>'
            f'<td>{_e(t["subject"])}</td><td>{_e(versions)}</td>'
            f'<td class="num">{_e(t["schema_id"])}</td><td>{_e(t["compatibility"])}</td>'
            f'<td>{_e(", ".join(t["key"]) or "—")}</td><td>{_e(order_text or "—")}</td></tr>')
    return ('<table><thead><tr><th>topic</th><th class="num">partitions</th><th>subject</th>'
            '<th>versions</th><th class="num">schema id</th><th>compatibility</th><th>key</th>'
            f"<th>order</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _pairs_html(values: dict[str, Any]) -> str:
    rows = "".join(f'<tr><td>{_e(k)}</td><td class="num">{_e(v)}</td></tr>'
                   for k, v in values.items())
    return f'<table style="max-width:560px"><tbody>{rows}</tbody></table>'


def _sinks_html(sinks: list[dict[str, Any]]) -> str:
    if not sinks:
        return '<p class="muted">No online sink is declared (or sinks are off here).</p>'
    rows = []
    for s in sinks:
        bad = s["state"] not in ("running", "starting")
        rows.append(f'<tr class="{"stuck" if bad else ""}"><td>{_e(s["topic"])}</td>'
                    f'<td>{_e(s["sink"])}</td><td>{_e(s["kind"])}</td><td>{_e(s["table"])}</td>'
                    f'<td>{_e(s["state"])}</td>'
                    f'<td class="num">{_n(s["rows_written"])}</td>'
                    f'<td class="num">{_n(s["rejected"])}</td>'
                    f'<td class="num">{_n(s["total_lag"])}</td>'
                    f'<td>{_e(s["last_error"])}</td></tr>')
    return ("<table><thead><tr><th>topic</th><th>sink</th><th>kind</th><th>table</th>"
            "<th>state</th><th>rows</th><th>refused</th><th>lag</th><th>last error</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _stalled_html(stalled: list[dict[str, Any]]) -> str:
    return "".join(f'<p class="warn stalled"><span class="tag">STALLED</span> '
                   f'<b>{_e(s["topic"])}[{_e(s["partition"])}]</b>: {_e(s["reason"])}</p>'
                   for s in stalled)


def render_status_html(doc: dict[str, Any]) -> str:
    """The status page of a :func:`status_document`; every value escaped."""
    monitor = doc["monitor"]
    stuck_count = sum(1 for c in doc["consumers"] for p in c["partitions"] if p["stuck"])
    stalled = (doc["archive"] or {}).get("stalled") or []
    if stalled:
        badge = f'<span class="badge bad">{len(stalled)} partition(s) not archived</span>'
    elif not monitor["enabled"]:
        badge = '<span class="badge off">lag monitor off</span>'
    elif stuck_count:
        badge = f'<span class="badge bad">{stuck_count} partition(s) stuck</span>'
    else:
        badge = '<span class="badge ok">all consumers progressing</span>'
    sampled = (f'sampled {_e(monitor["sampled_at"])} ({_e(monitor["sample_age_seconds"])}s ago)'
               if monitor["sampled_at"] else "no lag sample yet")
    warning = (f'<p class="warn">Last lag sample failed: {_e(monitor["error"])}. Figures are '
               "from the sample before.</p>" if monitor["error"] else "")
    warning += "".join(f'<p class="warn">{_e(line)}</p>' for line in agent_process_warnings(doc))
    archive = (_stalled_html(stalled) + _pairs_html(
        {k: v for k, v in doc["archive"].items() if k != "stalled"})
        if doc["archive"] is not None
        else '<p class="muted">No archive agent runs in this worker.</p>')
    verify = (_pairs_html(doc["last_verify"]) if doc["last_verify"]
              else '<p class="muted">no verify run yet</p>')
    refresh = max(5, round(monitor["interval_seconds"] or 5))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh}">
<title>onepipe status — {_e(doc["app_id"])}</title><style>{_CSS}</style></head>
<body><header><h1>onepipe status</h1>{badge}
<span class="meta">app <b>{_e(doc["app_id"])}</b> · {sampled} ·
generated {_e(doc["generated_at"])}</span></header>
<main>{warning}
<section id="consumers"><h2>Consumers</h2>{_consumers_html(doc)}</section>
<section id="topics"><h2>Topics</h2>{_topics_html(doc)}</section>
<section id="archive"><h2>Archive agent</h2>{archive}</section>
<section id="sinks"><h2>Online sinks</h2>{_sinks_html(doc.get("sinks") or [])}</section>
<section id="verify"><h2>Last verify</h2>{verify}</section>
<p class="muted">Same data as JSON: <code>/status.json</code> · Prometheus:
<code>/metrics</code></p></main></body></html>
"""
