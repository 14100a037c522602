"""One developer agent's counters (no behaviour; the worker exports them per agent).

Counters only grow while the runner lives; /metrics reads them at scrape time with the
agent's name as a label (onepipe.app.web.metrics), so nothing is recorded per record for
monitoring.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AGENT_COUNTERS", "AgentMetrics"]


@dataclass(slots=True)
class AgentMetrics:
    """Counters of one agent."""

    #: Records decoded and handed to the agent's code.
    records: int = 0
    #: Partition batches processed (committed or failed).
    batches: int = 0
    #: Records that did not decode (skipped, never handed over).
    undecodable: int = 0
    #: Records window tables dropped because all their windows had closed.
    late: int = 0
    #: Records produced by sends and closed windows (acknowledged).
    sent: int = 0
    #: Times the agent restarted from durable state after a failure.
    restarts: int = 0


#: name -> help text of every counter, as /metrics exports them.
AGENT_COUNTERS = {
    "records": "Records decoded and handed to a developer agent's code.",
    "batches": "Partition batches a developer agent processed.",
    "undecodable": "Records a developer agent skipped because they did not decode.",
    "late": "Records window tables dropped as late (every window of theirs had closed).",
    "sent": "Records a developer agent produced (sends and closed windows), acknowledged.",
    "restarts": "Times a developer agent restarted from durable state after a failure.",
}
