"""The stream API for developers: agents over registered topics, and enforced sends.

Contract:
- ``@streams.agent("widgets")`` runs a Faust agent over the topic; the function receives
  an async iterator of :class:`Record` with the value decoded by its writer schema and
  read with the topic's latest schema (so every version looks like the newest).
- Records whose bytes are not Confluent-framed Avro of a known schema are logged with
  their coordinates and skipped (counted in :attr:`StreamApi.undecodable`).
- ``await streams.send("topic", record)`` validates and encodes exactly like the produce
  endpoint, so an agent cannot publish what the endpoint would refuse.
- The agents read in Faust's consumer group, the app id; the worker's lag monitor shows
  it on every topic an agent was declared on (:meth:`StreamApi.subscribes_to`).
- Delivery is Faust's: at-least-once, offsets acked after the agent's loop body. These
  agents are for developers' low-volume logic; the archive, dedup and sink hot paths use
  batch consumers (DESIGN.md, "Hot paths").

The example agent (example.py: price alerts derived from ``widgets``) runs only when
``ONEPIPE_EXAMPLE_AGENTS`` is on (``onepipe dev``): a production worker must not
subscribe to, and so auto-create, a demo topic.
"""

from onepipe.agents.streams.api import AgentFn, Record, StreamApi

__all__ = ["AgentFn", "Record", "StreamApi"]
