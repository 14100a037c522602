"""A batch of Avro values of one writer schema, read in one call through polars.

Decoding record by record with fastavro costs ~3-5 µs a value in Python; the archive,
dedup and checksum hot paths need less. polars decodes an Avro object-container block in
Rust, releasing the GIL, at over a million values a second. This module wraps a batch of
values, as they are, into an in-memory null-codec container block and reads it: the one
framing the raw-lake encoder (onepipe.sinks.formats.avro_batch) and the keyed readers of
the dedup and checksum tables (onepipe.tables.dedup.decode) share.

Safety: a container block has no per-value boundaries, so one value with trailing bytes
would shift every value after it without an error (measured: polars then returns wrong
values silently). Each value is therefore prefixed with its length as an Avro long, and
the block's record schema is the writer's with a first field :data:`FRAME_LEN` added (a
record's encoding is its fields' encodings in order, so prefix + value is exactly a
record of that schema). :func:`read_block` checks every length read against the length
given and refuses the batch (None) on any mismatch; the caller then reads value by value,
so one bad value only costs itself. polars does not apply Avro schema resolution: only
values read as their writer wrote them come here.

Options of :func:`container`, each reading the same bytes differently:

- ``framed``: values keep their 5-byte Confluent header, declared as a ``fixed`` field
  after the length, so they go in without a copy each.
- ``bytes_fields``: plain ``string`` fields read as ``bytes`` (the same encoding), so a
  key is re-encoded without a UTF-8 round trip.
- ``enums_as_ints``: polars refuses Avro enums ("OutOfSpec"); an enum is encoded as its
  symbol's int index, so declaring it ``int`` reads the same bytes (as the index).
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Callable, Sequence
from typing import Any

import fastavro

from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.avro_write import zigzag_varint

__all__ = ["FRAME_HEAD", "FRAME_LEN", "SMALL_VARINTS", "container", "has_map", "plain_type",
           "read_block"]

log = logging.getLogger(__name__)

#: The length field prepended to every value of a block.
FRAME_LEN = "__onepipe_len"
#: The Confluent header field of a ``framed`` block.
FRAME_HEAD = "__onepipe_frame"
#: Varints of every value length below 16 KiB, so framing costs a list lookup per value.
SMALL_VARINTS = tuple(zigzag_varint(n) for n in range(16384))


def container(writer: AvroSchema, *, framed: bool = False,
              bytes_fields: frozenset[str] = frozenset(), enums_as_ints: bool = False
              ) -> tuple[bytes, bytes]:
    """(header, sync marker) of a null-codec container of ``writer``'s values (a record
    schema), with the options of the module docstring."""
    return _container(writer, framed, bytes_fields, enums_as_ints)


@functools.lru_cache(maxsize=256)
def _container(writer: AvroSchema, framed: bool, bytes_fields: frozenset[str],
               enums_as_ints: bool) -> tuple[bytes, bytes]:
    fields = [{**f, "type": "bytes"} if f["name"] in bytes_fields and plain_type(f["type"])
              == "string" else f for f in writer.json["fields"]]
    if enums_as_ints:
        enums = _enum_names(writer.json, writer.json.get("namespace"))
        if enums:
            # Defaults only matter to a reader resolving another writer; this container is
            # read as written, and an enum default would not type-check as an int.
            fields = [{k: v for k, v in f.items() if k != "default"}
                      | {"type": _enums_as_ints(f["type"], enums)} for f in fields]
    head = [{"name": FRAME_HEAD, "type": {"type": "fixed", "name": "onepipe_frame", "size": 5}}
            ] if framed else []
    schema = {**writer.json, "fields": [{"name": FRAME_LEN, "type": "long"}, *head, *fields]}
    buffer = io.BytesIO()
    writer_obj = fastavro.write.Writer(
        buffer, fastavro.parse_schema(schema, named_schemas={}), codec="null")
    writer_obj.flush()
    sync: bytes = writer_obj.sync_marker  # type: ignore[attr-defined]  # set in __init__
    return buffer.getvalue(), sync


def read_block(header: bytes, sync: bytes, values: Sequence[bytes], columns: Sequence[str]
               | None = None, *, on_panic: Callable[[BaseException], None] | None = None
               ) -> Any:
    """``values`` read in one container block made by :func:`container`: a polars frame of
    ``columns`` (all when None) plus :data:`FRAME_LEN`; None when polars refuses the block
    or a value's length does not match what it read.

    ``on_panic`` hears of polars panics (it has no code for some types, e.g. enums inside
    nested records), so a caller can stop trying a schema that never reads.
    """
    import polars as pl  # heavy (~0.5 s): loaded by the hot paths that use it

    small = SMALL_VARINTS
    lengths = list(map(len, values))
    if not lengths:
        return None
    parts: list[bytes] = [b""] * (2 * len(lengths))
    if max(lengths) < len(small):
        parts[::2] = map(small.__getitem__, lengths)
    else:
        parts[::2] = [small[n] if n < len(small) else zigzag_varint(n) for n in lengths]
    parts[1::2] = values
    payload = b"".join(parts)
    block = b"".join([header, zigzag_varint(len(lengths)), zigzag_varint(len(payload)),
                      payload, sync])
    wanted = None if columns is None else [FRAME_LEN, *columns]
    try:
        frame = pl.read_avro(io.BytesIO(block), columns=wanted)
    except pl.exceptions.PanicException as exc:
        log.debug("batch decode of %d values panicked (%r)", len(lengths), exc)
        if on_panic is not None:
            on_panic(exc)
        return None
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        log.debug("batch decode of %d values refused (%r)", len(lengths), exc)
        return None
    if frame.height != len(lengths) or frame[FRAME_LEN].to_list() != lengths:
        return None  # misaligned: some value has bytes its schema does not account for
    return frame


def has_map(node: Any) -> bool:
    """Whether a schema holds an Avro map anywhere (polars cannot read maps)."""
    if isinstance(node, list):
        return any(has_map(n) for n in node)
    if isinstance(node, dict):
        if node.get("type") == "map":
            return True
        return any(has_map(node.get(k)) for k in ("type", "fields", "items", "values"))
    return False


def plain_type(node: Any) -> str | None:
    """``"long"`` for ``"long"`` or ``{"type": "long"}``; None for anything richer."""
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and isinstance(node.get("type"), str) and "logicalType" not in node:
        kind: str = node["type"]
        return kind
    return None


def _enum_names(node: Any, namespace: str | None) -> frozenset[str]:
    """Short and full names of every enum defined in a schema."""
    found: set[str] = set()

    def walk(n: Any, ns: str | None) -> None:
        if isinstance(n, list):
            for item in n:
                walk(item, ns)
        elif isinstance(n, dict):
            ns = n.get("namespace", ns)
            if n.get("type") == "enum":
                name = str(n["name"])
                short = name.rsplit(".", 1)[-1]
                found.update({name, short, f"{ns}.{short}" if ns and "." not in name else name})
            for child in ("fields", "type", "items", "values"):
                if child in n:
                    walk(n[child], ns)

    walk(node, namespace)
    return frozenset(found)


def _enums_as_ints(node: Any, enums: frozenset[str]) -> Any:
    """``node`` with every enum definition and reference replaced by ``int``."""
    if isinstance(node, str):
        return "int" if node in enums else node
    if isinstance(node, list):
        return [_enums_as_ints(n, enums) for n in node]
    if isinstance(node, dict):
        if node.get("type") == "enum":
            return "int"
        return {k: _enums_as_ints(v, enums) if k in ("fields", "type", "items", "values")
                else v for k, v in node.items() if k != "default"}
    return node
