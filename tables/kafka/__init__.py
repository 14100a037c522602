"""Kafka plumbing every stateful part needs: the one client factory, topics, reads to the end.

Contract:

- :class:`KafkaClients` (clients.py) builds every producer, consumer and admin client of
  onepipe, so connection and security settings live in one place. Its group consumer -
  the batch agents' - is librdkafka's behind aiokafka's API by default, or aiokafka's
  (``consumer_client``; rdkafka_consumer.py, its records as columns record_columns.py
  and one by one rdkafka_records.py, its thread
  rdkafka_thread.py, its rebalance callbacks rdkafka_rebalance.py; the API: types.py).
- :func:`ensure_topic` creates a topic if missing and returns its partition count; it
  lists before it describes, because a metadata request naming a missing topic creates
  it (tansu always, Kafka by default) with the wrong partition count.
  :func:`topic_exists` asks the same way, creating nothing.
- :func:`read_to_end` reads a partition to the *fetch high watermark*, never to
  ``end_offsets()``: tansu answers ListOffsets(latest) wrongly (DESIGN.md), and the high
  watermark is what Kafka's own lag metrics use, correct on Apache Kafka too. Registry
  replay, state recovery, lag and ``verify`` all read "to the end" through it;
  :func:`read_topic` reads every partition of a topic that way, and
  :func:`high_watermarks` asks where given partitions end (the same watermark, from a
  short-lived reader; an empty partition ends at 0) - how an agent finds that the log
  behind its durable state was reset (a position beyond the end).
"""

from onepipe.tables.kafka.clients import KafkaClients
from onepipe.tables.kafka.topics import (
    ensure_topic,
    high_watermarks,
    read_to_end,
    read_topic,
    topic_exists,
)

__all__ = ["KafkaClients", "ensure_topic", "high_watermarks", "read_to_end", "read_topic",
           "topic_exists"]
