"""Formats: records in, bytes or Arrow columns out - no I/O, no destination.

Contract:

- :mod:`~onepipe.sinks.formats.arrow_types`: every Avro type (logical types included) as
  one Arrow type, the mapping the raw lake, the clean lake, the figures and the sinks
  share, so a value has one column type everywhere; the per-value conversions it needs
  are in :mod:`~onepipe.sinks.formats.arrow_values`.
- :mod:`~onepipe.sinks.formats.raw`: the raw lake's Parquet file - one row per Kafka
  record, its exact key and value bytes (the source of truth for replay) beside typed
  columns decoded with the topic's latest schema; undecodable values keep their bytes.
- :mod:`~onepipe.sinks.formats.avro_batch`: a batch of Avro bodies decoded into Arrow
  columns in one call (polars), or None so the caller decodes record by record.
- :mod:`~onepipe.sinks.formats.topic_view`: a topic as columns - the checksum spec and the
  key-hash spec every system computes its figures with.

Destinations (onepipe.sinks.lake, the database sinks) take these bytes and know nothing of
Avro; these modules know nothing of where the bytes go.
"""
