"""Publishing: records into registered topics, validated as the produce endpoint does.

Contract (:class:`Publisher`):

- **All or nothing before the send**: every record of a call is converted and validated
  against the topic's schema first; one invalid record fails the whole call with
  ``RecordValidationError`` (per record, per field) and nothing is produced.
- **Keyed by the unique key**: the Kafka key is the deterministic encoding of the key
  fields (onepipe.schemas.codec.KeyEncoder), so every version of a key lands in one
  partition; values are Confluent-framed Avro of the registered schema.
- **Acknowledged means durable**: a call returns after the broker acknowledged every
  record (``acks=all``). A broker failure part-way raises ``BrokerError`` with some
  records possibly written; a retry duplicates them, which dedup by unique key absorbs
  (at-least-once, DESIGN.md).
- The producer is the caller's (built by onepipe.tables.kafka's factory and bound with
  :meth:`Publisher.bind`), so the same path serves the HTTP endpoint and developers'
  agents (onepipe.agents.streams).
"""

from onepipe.sinks.publish.publisher import Delivery, Publisher, TopicWriter

__all__ = ["Delivery", "Publisher", "TopicWriter"]
