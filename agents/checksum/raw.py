"""Raw records of a source batch placed in days: what the checksum agent counts.

Every record of the source topic counts (duplicates, retries and losers alike), placed as
the raw lake places it (onepipe.agents.verify.raw): by the day of its ``partition_time``
field (onepipe.schemas.partition_day over the column's Arrow type,
onepipe.sinks.formats.raw's mapping), else - value undecodable, or the field null - by its
Kafka timestamp. Only the ``partition_time`` field is decoded: in one polars container
block per schema id (onepipe.schemas.avro_container; the whole batch at once when every
value is framed with one id), else record by record, where fastavro resolves each
writer schema against a one-field projection of the latest reader schema, both with
logical types stripped (so no datetime, date or Decimal is made: values stay ints, and the
Arrow cast to the column's type gives them their unit back; the stripped writers are
parsed once per schema id). For ``partition_time: kafka`` nothing is decoded: a record is
undecodable when its value is not a framed message of a known schema (known gap: the raw
lake calls a framed value whose body does not decode undecodable too; both count the
record in the same day all the same).

Records are read only through onepipe.tables.kafka.record_columns' readers (values and
timestamps as columns), so the librdkafka consumer's records are never made into objects,
and :meth:`RawPlacer.place` returns columns (:class:`Placed`) that
onepipe.tables.checksum.count_raw counts column-wise: no Python step per record on the
common path (every value framed with one schema id).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import fastavro
import pyarrow as pa
import pyarrow.compute as pc
from aiokafka import ConsumerRecord

from onepipe.schemas.avro_container import container, has_map, read_block
from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.codec import HEADER_SIZE, header_id, unframe
from onepipe.schemas.errors import OnepipeError
from onepipe.schemas.metadata import KAFKA_TIMESTAMP
from onepipe.schemas.partition_day import partition_days
from onepipe.sinks.formats.topic_view import TopicView
from onepipe.tables.kafka.record_columns import timestamps_of, values_of

__all__ = ["Placed", "RawPlacer"]

#: Below this many values of one schema, a container block costs more than it saves.
_BATCH_MIN = 16

_ERRORS = (OnepipeError, EOFError, ValueError, TypeError, IndexError, KeyError,
           UnicodeDecodeError, fastavro.read.SchemaResolutionError)


def _plain(avro_type: Any) -> Any:
    """An Avro schema without logical types, at any depth."""
    if isinstance(avro_type, list):
        return [_plain(t) for t in avro_type]
    if isinstance(avro_type, dict):
        return {k: _plain(v) for k, v in avro_type.items() if k != "logicalType"}
    return avro_type


class Placed(NamedTuple):
    """Where a batch's records go, one entry per record in order."""

    #: Day number (days since the epoch, int32) of each record.
    days: pa.Array
    #: Whether each record's value did not decode (bool; it is placed by its Kafka time).
    undecodable: pa.Array

    def pairs(self) -> list[tuple[int, bool]]:
        """``(day, undecodable)`` of each record (for tests and logs; not the hot path)."""
        return list(zip(self.days.to_pylist(), self.undecodable.to_pylist(), strict=True))


def _kafka_days(records: Sequence[ConsumerRecord[Any, Any]]) -> pa.Array:
    """The day of each record's Kafka timestamp."""
    return partition_days(pa.array(timestamps_of(records), pa.int64())
                          .cast(pa.timestamp("ms", tz="UTC")))


class RawPlacer:
    """Places the records of one source topic in days (see the module contract)."""

    def __init__(self, view: TopicView, reader: AvroSchema) -> None:
        self.view = view
        self._kafka = view.meta.partition_time == KAFKA_TIMESTAMP
        self._projection: Any = None
        if not self._kafka:
            raw = reader.json
            field = next(f for f in raw["fields"] if f["name"] == view.meta.partition_time)
            projection = {k: v for k, v in raw.items() if k in ("type", "name", "namespace")}
            projection["fields"] = [{"name": field["name"], "type": _plain(field["type"]),
                                     **({"default": field["default"]}
                                        if "default" in field else {})}]
            self._projection = fastavro.parse_schema(projection, named_schemas={})
        #: Schema id -> the writer without logical types, parsed.
        self._writers: dict[int, Any] = {}
        self._arrow = view.column_type(view.time_column)

    def place(self, schema_by_id: Callable[[int], AvroSchema],
              records: Sequence[ConsumerRecord[Any, Any]]) -> Placed:
        """The day of each record and whether its value did not decode, as columns."""
        values = values_of(records)
        if self._kafka:
            bad = self._unknown(schema_by_id, values)
            days = _kafka_days(records)
        else:
            storage = pa.int32() if pa.types.is_date32(self._arrow) else pa.int64()
            whole = self._place_whole(schema_by_id, values, storage)
            if whole is not None:
                times, bad = whole, pa.repeat(False, len(values))
            else:
                listed, flags = self._place_each(schema_by_id, values)
                times, bad = pa.array(listed, storage), pa.array(flags, pa.bool_())
            days = partition_days(times.cast(self._arrow))
            if days.null_count:  # undecodable, or the field null: the Kafka timestamp's day
                days = pc.coalesce(days, _kafka_days(records))
        return Placed(days.cast(pa.int32()), bad)

    def _unknown(self, schema_by_id: Callable[[int], AvroSchema],
                 values: Sequence[bytes | None]) -> pa.Array:
        """For ``partition_time: kafka``: whether each value is *not* framed with a known
        schema id, found per distinct 5-byte head (what :meth:`_decode` finds per value)."""
        heads = pc.binary_slice(pa.array(values, pa.binary()), 0, HEADER_SIZE)
        known = [head for head in pc.unique(heads).to_pylist()
                 if head is not None and self._decode(head, schema_by_id)[1]]
        return pc.invert(pc.is_in(heads, pa.array(known, pa.binary()))).fill_null(True)

    def _place_whole(self, schema_by_id: Callable[[int], AvroSchema],
                     values: Sequence[bytes | None], storage: pa.DataType) -> pa.Array | None:
        """The common case in one polars call and no Python step per record: every value
        framed with one schema id (found column-wise). None when it does not apply."""
        if len(values) < _BATCH_MIN:
            return None
        column = pa.array(values, pa.binary())
        if column.null_count:
            return None
        heads = pc.unique(pc.binary_slice(column, 0, HEADER_SIZE))
        head = heads[0].as_py() if len(heads) == 1 else None
        if head is None or len(head) < HEADER_SIZE or head[0] != 0:
            return None
        frame = self._read(schema_by_id, head, values)
        if frame is None:
            return None
        name = self.view.meta.partition_time
        return pa.array(frame[name].to_physical().to_arrow()).cast(storage)

    def _place_each(self, schema_by_id: Callable[[int], AvroSchema],
                    values: Sequence[bytes | None]) -> tuple[list[int | None], list[bool]]:
        """Times and undecodable flags, a polars call per schema group, else per value."""
        times: list[int | None] = [None] * len(values)
        bad: list[bool] = [True] * len(values)
        batched = self._place_batches(schema_by_id, values, times, bad)
        for i, value in enumerate(values):
            if i not in batched:
                times[i], ok = self._decode(value, schema_by_id)
                bad[i] = not ok
        return times, bad

    def _read(self, schema_by_id: Callable[[int], AvroSchema], head: bytes,
              values: Sequence[Any]) -> Any:
        """The partition_time column of ``values`` (all framed with ``head``) in one
        polars frame, or None when the schema is not one to batch."""
        try:
            writer = schema_by_id(header_id(head))
        except (OnepipeError, KeyError):
            return None  # unknown id: the record-by-record path counts it undecodable
        name = self.view.meta.partition_time
        if not writer.is_record or has_map(writer.json) or name not in {
                f["name"] for f in writer.json.get("fields", [])}:
            return None
        header, sync = container(writer, framed=True, enums_as_ints=True)
        return read_block(header, sync, values, [name])

    def _place_batches(self, schema_by_id: Callable[[int], AvroSchema],
                       values: Sequence[bytes | None], times: list[int | None],
                       bad: list[bool]) -> set[int]:
        """Decode the partition_time of whole schema groups with polars (the dedup agent's
        container path, ~0.4 µs a value instead of ~3 µs); the indices it placed."""
        groups: dict[bytes, list[int]] = {}
        for i, value in enumerate(values):
            if value is not None and len(value) >= HEADER_SIZE and value[0] == 0:
                groups.setdefault(value[:HEADER_SIZE], []).append(i)
        placed: set[int] = set()
        name = self.view.meta.partition_time
        for head, indices in groups.items():
            if len(indices) < _BATCH_MIN:
                continue
            frame = self._read(schema_by_id, head, [values[i] for i in indices])
            if frame is None:
                continue
            # Physical ints in the Avro unit (ms, µs, days), as the fastavro path makes.
            for i, moment in zip(indices, frame[name].to_physical().to_list(), strict=True):
                times[i] = moment
                bad[i] = False
            placed.update(indices)
        return placed

    def _decode(self, value: bytes | None, schema_by_id: Callable[[int], AvroSchema]
                ) -> tuple[int | None, bool]:
        if value is None or len(value) < HEADER_SIZE:
            return None, False
        try:
            schema_id, body = unframe(value)
            writer = schema_by_id(schema_id)
            if self._kafka:
                return None, True
            parsed = self._writers.get(schema_id)
            if parsed is None:
                parsed = fastavro.parse_schema(_plain(writer.json), named_schemas={})
                self._writers[schema_id] = parsed
            datum = fastavro.schemaless_reader(io.BytesIO(body), parsed, self._projection)
        except _ERRORS:
            return None, False
        found = datum.get(self.view.meta.partition_time) if isinstance(datum, dict) else None
        return (found if isinstance(found, int) else None), True
