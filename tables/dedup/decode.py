"""Read the canonical key and the order value of a batch of framed values (the hot path).

For each value: the canonical Kafka key (``KeyEncoder(latest schema, key).encode(record)``:
the Avro binary of the key fields) and the order field's value (what
``MergeRule.order_value`` reads), or ``None`` for a value that is undecodable (a
tombstone, no Confluent frame, an unknown schema id, a body that does not decode).

Two paths give the same answers (tested property):

- **Batch** (polars, in Rust): the values of one writer schema are wrapped, as they are,
  into one Avro container block and only the key and order columns are materialised.
  Each value is prefixed with its length (onepipe.schemas.avro_container: a misaligned batch is
  refused, not misread), and the container's record schema is the writer's
  with two fields in front: that length and the 5-byte Confluent header as a ``fixed``,
  so values go in without a copy each. String key fields are read as ``bytes`` (the
  same encoding), so the key is re-encoded without a UTF-8 round trip. Taken when every key
  field of the writer is a plain ``string``/``bytes``/``int``/``long``/``boolean`` and the
  order field a plain ``int``/``long`` (rule ``max``) or absent (rule ``first``), because
  then the key bytes can be re-encoded from the columns without fastavro: those types
  encode identically under every promotion a compatible schema may make
  (``int``->``long``, ``string``<->``bytes``). ~0.3 µs a value.
- **Record by record** (fastavro with the latest schema as reader, then ``KeyEncoder``):
  everything else (enums, logical types, maps of vector clocks), and every batch the
  fast path refuses, so one bad value only costs itself. ~3 µs a value.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from onepipe.schemas.avro_container import SMALL_VARINTS, container, has_map, plain_type, read_block
from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.avro_write import zigzag_varint
from onepipe.schemas.codec import KeyEncoder, decode, header_id
from onepipe.schemas.errors import CodecError, MergeError
from onepipe.schemas.merge import MergeRule
from onepipe.schemas.metadata import TopicMetadata

log = logging.getLogger(__name__)

__all__ = ["Decoded", "TopicReader"]

_FIVE = operator.itemgetter(slice(0, 5))
_FAST_KEY_TYPES = frozenset({"string", "bytes", "int", "long", "boolean"})
#: Below this many values of one schema, a container block costs more than it saves.
_BATCH_MIN = 16

#: (canonical keys, order values): ``keys[i] is None`` marks value ``i`` undecodable.
Decoded = tuple[list[bytes | None], list[Any]]


def _encode_field(kind: str) -> Callable[[Any], bytes]:
    small = SMALL_VARINTS
    if kind in ("string", "bytes"):  # strings are read as bytes (module docstring)
        def encode_bytes(v: Any) -> bytes:
            size = len(v)
            return (small[size] if size < 16384 else zigzag_varint(size)) + v
        return encode_bytes
    if kind == "boolean":
        return lambda v: b"\x01" if v else b"\x00"
    return zigzag_varint  # int, long


@dataclass(frozen=True, slots=True)
class _Plan:
    """How values of one writer schema are read."""

    writer: AvroSchema
    #: Column names to materialise in the batch path (key fields, then the order field).
    columns: tuple[str, ...] | None
    #: Encoders of the key fields' columns, in key order (batch path only).
    encoders: tuple[Callable[[Any], bytes], ...] = ()
    #: Whether the key is one ``string``/``bytes`` field (encoded column-wise).
    single_bytes_key: bool = False
    #: The container block's header and sync marker.
    header: bytes = b""
    sync: bytes = b""


class TopicReader:
    """Reads keys and order values of one topic's framed values; one per topic."""

    def __init__(self, meta: TopicMetadata, latest: AvroSchema,
                 schema_by_id: Callable[[int], AvroSchema | None]) -> None:
        self.meta = meta
        self.rule = MergeRule(meta.order)
        self._latest = latest
        self._key_encoder = KeyEncoder(latest, meta.key)
        self._schema_by_id = schema_by_id
        self._plans: dict[int, _Plan | None] = {}
        #: Schema ids of framed values ``read`` found unknown, until :meth:`take_missed`.
        self._missed: set[int] = set()
        # polars takes ~0.5 s to import: pay it when a topic is followed, not in the
        # middle of the first batch (a rebalance-time cost, not a hot-path one).
        import polars  # noqa: F401, PLC0415

    # ------------------------------------------------------------------ plans
    def _plan(self, schema_id: int) -> _Plan | None:
        if schema_id in self._plans:
            return self._plans[schema_id]
        writer = self._schema_by_id(schema_id)
        plan = None if writer is None else self._make_plan(writer)
        self._plans[schema_id] = plan
        return plan

    def _make_plan(self, writer: AvroSchema) -> _Plan:
        if not writer.is_record or has_map(writer.json):  # polars has no Avro maps
            return _Plan(writer, None)
        fields = {f["name"]: plain_type(f["type"]) for f in writer.json.get("fields", [])}
        kinds = [fields.get(k) for k in self.meta.key]
        if not all(kind in _FAST_KEY_TYPES for kind in kinds):
            return _Plan(writer, None)
        columns = list(self.meta.key)
        order = self.meta.order
        if order.rule == "max":
            if fields.get(order.field or "") not in ("int", "long"):
                return _Plan(writer, None)
            columns.append(order.field or "")
        elif order.rule != "first":
            return _Plan(writer, None)
        header, sync = container(writer, framed=True, bytes_fields=frozenset(self.meta.key),
                                 enums_as_ints=True)
        return _Plan(writer, tuple(columns), tuple(_encode_field(k or "") for k in kinds),
                     single_bytes_key=len(kinds) == 1 and kinds[0] in ("string", "bytes"),
                     header=header, sync=sync)

    def unknown_ids(self, values: Sequence[bytes | None]) -> set[int]:
        """Schema ids among framed ``values`` that the registry does not know (yet)."""
        try:
            heads = set(map(_FIVE, values))  # type: ignore[arg-type]  # None raises
        except TypeError:
            heads = {v[:5] for v in values if v is not None}
        ids = (header_id(h) for h in heads if len(h) == 5 and h[0] == 0)
        return {i for i in ids if self._plan(i) is None}

    def forget_unknown(self) -> None:
        """Look unknown schema ids up again (the registry may have learnt them)."""
        self._plans = {i: p for i, p in self._plans.items() if p is not None}

    def take_missed(self) -> set[int]:
        """Schema ids unknown to the registry that ``read`` met since the last call.

        So a caller learns of unknown ids from the read itself, instead of scanning every
        value's header a second time before it (:meth:`unknown_ids`).
        """
        missed, self._missed = self._missed, set()
        return missed

    # ------------------------------------------------------------------- read
    def read(self, values: Sequence[bytes | None]) -> Decoded:
        """Canonical key and order value of every value (see the module docstring)."""
        count = len(values)
        keys: list[bytes | None] = [None] * count
        orders: list[Any] = [None] * count
        try:
            heads = list(map(_FIVE, values))  # type: ignore[arg-type]  # C-level; None raises
        except TypeError:
            heads = [v[:5] if v is not None else b"" for v in values]
        first = heads[0] if heads else b""
        if heads.count(first) == count:
            groups = {first: range(count)}
        else:
            grouped: dict[bytes, list[int]] = {}
            for i, head in enumerate(heads):
                grouped.setdefault(head, []).append(i)
            groups = grouped  # type: ignore[assignment]  # list and range both index
        for head, indices in groups.items():
            if len(head) < 5 or head[0] != 0:
                continue  # tombstone or not Confluent-framed: undecodable
            schema_id = header_id(head)
            plan = self._plan(schema_id)
            if plan is None:
                self._missed.add(schema_id)
                continue  # unknown schema id
            if plan.columns is not None and len(indices) >= _BATCH_MIN:
                if self._read_batch(plan, values, indices, keys, orders):
                    continue
            self._read_each(plan, values, indices, keys, orders)
        return keys, orders

    def _read_batch(self, plan: _Plan, values: Sequence[bytes | None], indices: Sequence[int],
                    keys: list[bytes | None], orders: list[Any]) -> bool:
        assert plan.columns is not None
        small = SMALL_VARINTS
        chosen = values if isinstance(indices, range) else [values[i] for i in indices]
        frame = read_block(plan.header, plan.sync, chosen, plan.columns)  # type: ignore[arg-type]  # grouped by a 5-byte head: no None
        if frame is None:
            return False
        nkey = len(plan.encoders)
        key_columns = [frame[name].to_list() for name in plan.columns[:nkey]]
        if plan.single_bytes_key:
            column = key_columns[0]
            sizes = list(map(len, column))
            if max(sizes) >= len(small):
                return False
            encoded = list(map(operator.add, map(small.__getitem__, sizes), column))
        elif nkey == 1:
            encode = plan.encoders[0]
            encoded = [encode(v) for v in key_columns[0]]
        else:
            encoders = plan.encoders
            encoded = [b"".join(enc(v) for enc, v in zip(encoders, row, strict=True))
                       for row in zip(*key_columns, strict=True)]
        order_column = (frame[plan.columns[nkey]].to_list() if len(plan.columns) > nkey
                        else None)
        if isinstance(indices, range) and len(indices) == len(keys):  # the whole batch
            keys[:] = encoded
            if order_column is not None:
                orders[:] = order_column
        elif order_column is not None:
            for i, key, order in zip(indices, encoded, order_column, strict=True):
                keys[i] = key
                orders[i] = order
        else:
            for i, key in zip(indices, encoded, strict=True):
                keys[i] = key
        return True

    def _read_each(self, plan: _Plan, values: Sequence[bytes | None], indices: Sequence[int],
                   keys: list[bytes | None], orders: list[Any]) -> None:
        writer, latest, rule, encoder = plan.writer, self._latest, self.rule, self._key_encoder

        def writer_for(_: int) -> AvroSchema:
            return writer

        for i in indices:
            value = values[i]
            assert value is not None  # grouped by a 5-byte head
            try:
                _, datum = decode(value, writer_for, latest)
                keys[i] = encoder.encode(datum)
                orders[i] = rule.order_value(datum)
            except (CodecError, MergeError, ValueError, TypeError, KeyError) as exc:
                log.debug("undecodable value of %s: %r", self.meta.topic, exc)
