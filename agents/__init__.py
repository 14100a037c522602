"""The agents: one room per capability, each a consumer of Kafka that the worker hosts.

| room        | reads                          | writes                              | guarantee |
|-------------|--------------------------------|-------------------------------------|-----------|
| ``archive`` | every archived topic           | ``raw/`` Parquet lake               | exactly once |
| ``dedup``   | keyed topics, ``.repartition`` | ``<t>.unique``, ``<t>.repartition`` | at least once, never regresses |
| ``checksum``| ``<t>.unique`` and ``<t>``     | ``<t>.checksums`` (RocksDB state)   | exactly-once fold |
| ``compact`` | ``raw/`` lake, task topic      | clean lake (versioned days)         | atomic per run |
| ``verify``  | every system holding a topic   | a report                            | read only |
| ``replay``  | ``raw/`` lake                  | any topic                           | at least once |
| ``streams`` | developers' topics             | through the registry                | Faust's at least once |

``batch`` is the skeleton the hot-path agents (archive, dedup, checksum) fill in. A room
imports its own modules and ``batch``, never another room; what two rooms share lives a
floor down, in ``onepipe.tables`` (state, Kafka clients), ``onepipe.sinks`` (lake,
formats, publishing) or ``onepipe.schemas`` (names, codecs, rules) - tests/test_layering.py
holds the house to it. Each room's ``__init__`` states its contract and exports what the
worker (``onepipe.app``) uses.
"""
