"""Typed records: dataclasses for a topic's records, checked against its reader schema.

An agent declares the fields it needs of a topic as a dataclass (frozen or not, slotted or
not) and gets instances instead of dicts::

    check_record_type(Order, registry.reader_schema("orders"), topic="orders")
    to_order = record_converter(Order, schema, topic="orders")   # dict -> Order
    send(to_record(order))                                       # Order -> JSON-form dict

Contract:

- **A projection of the reader schema** (the topic's latest registered version, the
  schema every version is decoded into). Schema fields the class lacks are ignored; a
  class field the schema lacks is an error unless it has a default, which it then keeps.
  A field whose Avro name is not a usable Python name maps through
  ``field(metadata={"avro_name": "class"})`` (:data:`AVRO_NAME`).
- **Checked once, never per record.** :func:`check_record_type` raises
  :class:`~onepipe.schemas.errors.RecordTypeError` (a ``ConfigError``, code
  ``record_type_mismatch``) naming the topic, the class, each field path
  (``Order.address.city``, ``Widget.tags[]``, ``Widget.attrs{}``) and its reason:
  *missing field*, *wrong type*, or *not Optional* (the schema's union has ``null``).
- **Types are what fastavro's reader returns** (fastavro decodes logical types):

  ====================================  ===============================================
  Avro                                  annotation
  ====================================  ===============================================
  string / int, long / float, double    ``str`` / ``int`` / ``float`` (exact: no ``float``
                                        for an int - the value would be an ``int``)
  boolean / bytes, fixed / null         ``bool`` / ``bytes`` / ``None``
  enum                                  ``str``, a ``Literal`` of (at least) its symbols,
                                        or an ``enum.Enum`` with a member per symbol value
  array / map                           ``list[T]``, ``Sequence[T]``, ``tuple[T, ...]`` /
                                        ``dict[str, T]``, ``Mapping[str, T]``
  record                                a dataclass (checked recursively) or
                                        ``dict[str, Any]``
  ``["null", T]`` / other unions        ``T | None`` / a union with a member per branch
  timestamp-*, local-timestamp-*        ``datetime.datetime`` (UTC-aware; local: naive)
  date / time-millis, time-micros       ``datetime.date`` / ``datetime.time``
  decimal                               ``decimal.Decimal``
  uuid                                  ``uuid.UUID`` (as decoded) or ``str``
  anything                              ``Any`` or ``object``
  ====================================  ===============================================

  A wider annotation is fine (``int | None`` for an ``int``; ``Any``); a narrower one is
  an error. ``Annotated[T, ...]`` is ``T``.
- **Converting is cheap.** :func:`record_converter` compiles one constructor call per
  class (generated code: no loop, no per-field dispatch; fields that need no change are
  passed straight through; enums are a dict lookup; a slotted dataclass without
  ``__post_init__`` has its slots set directly, skipping the frozen ``__init__``'s
  ``object.__setattr__`` per field). The generated 7-field ``widgets`` class costs
  0.5-0.7 µs a record, where ``dict(record)`` alone costs 0.45 µs and going through a
  frozen ``__init__`` 1.25 µs (``.venv/bin/python bench/typed_records.py``, CPython
  3.11, a shared 2-core machine). :func:`columns_converter` builds a batch's instances
  from its columns (onepipe.schemas.avro_columns), with no dict per record: ~0.2 µs a
  record for a 3-field slotted class (bench/agents.py's).
- **Sending goes through the produce validation.** :func:`to_record` turns an instance
  back into Avro's JSON form, which
  :func:`~onepipe.schemas.validation.validate_records` accepts exactly as it accepts a
  ``POST /topics/{topic}/records`` body. A class that is a projection cannot send: the
  validation wants every schema field without a default.
- **Generated classes fit.** :func:`generate_module` (``onepipe codegen TOPIC``) writes
  frozen, slotted, ``kw_only`` dataclasses: nested records as classes, enums as
  ``Literal`` aliases (a ``str`` at run time: no conversion), nullable unions as
  ``T | None = None``, Avro defaults where a literal can say them, docs as docstrings.
  Each generated module passes :func:`check_record_type` against its own schema.
"""

from __future__ import annotations

from onepipe.schemas.errors import RecordTypeError
from onepipe.schemas.typed.check import (
    check_record_type,
    columns_converter,
    converter_many,
    record_converter,
)
from onepipe.schemas.typed.codegen import generate_module
from onepipe.schemas.typed.model import AVRO_NAME
from onepipe.schemas.typed.to_record import to_record

__all__ = [
    "AVRO_NAME",
    "RecordTypeError",
    "check_record_type",
    "columns_converter",
    "converter_many",
    "generate_module",
    "record_converter",
    "to_record",
]
