"""Replay: archived records back into Kafka, as if time went back (``onepipe replay``).

Contract:

- **In**: the raw lake of a topic (onepipe.sinks.lake), optionally only some partitions
  and a Kafka-timestamp range. **Out**: a target topic, each record with the same key
  bytes, value bytes, headers and timestamp, partition by partition in offset order, to
  the same partition number when the target has it (so per-key order is kept) and by key
  hash otherwise.
- **Delivery**: at-least-once. An interrupted replay run again sends the records again;
  dedup by unique key downstream removes the repeats. A record the broker did not
  acknowledge is a ``BrokerError`` saying so; ``replay`` returns only once every record
  sent is acknowledged.
- **Memory**: one raw file at a time, and at most two chunks of it (10,000 records or
  ~4 MiB of keys and values each) unacknowledged on a producer with ``send_columns``
  (librdkafka's), 2,000 records on one without (aiokafka's, one ``send`` a record).
- Replaying into the source topic is refused unless the caller says so: it doubles every
  record there. Nothing here reads or commits consumer offsets; the producer is the
  caller's (onepipe.tables.kafka's factory).
"""

from onepipe.agents.replay.replay import ReplaySummary, replay, select_files

__all__ = ["ReplaySummary", "replay", "select_files"]
