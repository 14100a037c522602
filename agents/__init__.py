"""The agents: one room per capability, each a consumer of Kafka that the worker hosts.

- ``archive``: every archived topic into the raw Parquet lake, exactly once.
- ``dedup``: keyed topics (and ``<t>.repartition``) into ``<t>.unique``, each key's
  winning version; at least once, never a regression.
- ``checksum``: ``<t>.unique`` and ``<t>`` folded into per-day figures (RocksDB),
  published to ``<t>.checksums``; an exactly-once fold.
- ``compact``: the raw lake into the clean lake's versioned days; atomic per run.
- ``verify``: every system holding a topic compared day by day; read only.
- ``replay``: the raw lake back into a topic; at least once.
- ``framework``: developers' agents over registered topics (``@onepipe.agent``,
  ``@onepipe.batch_agent``), state in changelogged tables, sends through the registry's
  validation; state exactly once, outputs at least once.

``batch`` is the skeleton the hot-path agents (archive, dedup, checksum) fill in. A room
imports its own modules and ``batch``, never another room; what two rooms share lives a
floor down, in ``onepipe.tables`` (state, Kafka clients), ``onepipe.sinks`` (lake,
formats, publishing) or ``onepipe.schemas`` (names, codecs, rules) - tests/test_layering.py
holds the house to it. Each room's ``__init__`` states its contract and exports what the
worker (``onepipe.app``) uses.
"""
