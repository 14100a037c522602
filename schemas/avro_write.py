"""Avro binary encoding compiled per schema: fastavro's bytes, without its per-value dispatch.

Guarantee: :meth:`AvroWriter.write` appends to a buffer exactly the bytes
``fastavro.schemaless_writer(buf, parsed, datum)`` writes for the same parsed schema and
datum, or raises what it raises. tests/schemas/test_avro_write.py checks this over the
catalog's schemas, the compatibility vectors' schemas and generated ones.

How: each schema becomes Python source (one function per record type, fields inline),
compiled once. The compiled code takes the exact builtin types that
:mod:`onepipe.schemas.validation` produces (``str``, ``int``, ``float``, ``bool``,
``bytes``, ``Decimal``, ``dict``, ``list``, ``None``) and keeps to values whose encoding
is certain: it checks every type and range as fastavro's union validation would. Any
other value (a datetime from a fastavro read, a subclass, a missing field fastavro would
fill from its default, a value out of range) makes it give up on that datum: the partial
bytes are dropped and fastavro's ``write_data`` writes the whole datum instead, so
fastavro's own output or error is what the caller gets. Unions other than ``null`` plus
one type, and logical types fastavro does not know, are written per value by
fastavro's ``write_data``, which is where fastavro's branch choice lives.

Why: fastavro's Cython ``write_data`` looks at the schema again for every value (type
names compared as strings, logical-type names built per value, a union validated branch
by branch): 3.3 µs of the 4.3 µs a framed ``widgets`` value took; the compiled code takes
~1.3 µs, ~1.5 µs framed and cut from the batch's buffer (bench/encode_path.py). Tried and
dropped: one generated loop over the whole batch instead of a call per datum (no gain),
a Python or table-driven varint instead of fastavro's for longs past one byte (slower).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import fastavro
from fastavro._logical_writers import LOGICAL_WRITERS
from fastavro._write import write_data  # type: ignore[attr-defined]  # stub omits it

__all__ = ["AvroWriter", "zigzag_varint"]

# write_data is the Cython writer schemaless_writer itself calls: the fallback and the code
# for what is not compiled are fastavro's own code path, not a copy of it.

#: The options ``fastavro.schemaless_writer`` passes with its defaults.
_OPTIONS = {"strict": False, "strict_allow_default": False, "disable_tuple_notation": False}
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
#: Logical types whose underlying value is an int: fastavro's preparation converts
#: datetimes, dates, times (and a date's ISO text) and returns an int unchanged.
_INT_LOGICAL = frozenset({
    "int-date", "int-time-millis", "long-time-micros", "long-timestamp-millis",
    "long-timestamp-micros", "long-local-timestamp-millis", "long-local-timestamp-micros",
})
_NATIVE_LOGICAL = _INT_LOGICAL | {"bytes-decimal", "fixed-decimal", "string-uuid"}


#: fastavro's writer for a long: what the compiled code calls beyond one byte.
_LONG = "_wd(out, %s, 'long', _NS, '', _OPT)"


class _Miss(Exception):
    """The compiled code met a value it does not take; fastavro writes the datum."""


class AvroWriter:
    """Writes datums of one parsed schema (fastavro's ``parse_schema`` output).

    With ``fields``, the schema is a record of those fields and each datum a mapping that
    holds them among others (a key record read out of a value record): what is written
    is ``{k: datum[k] for k in fields}``, without building that dict on the fast path.
    """

    __slots__ = ("_fast", "_fields", "_named", "_parsed")

    def __init__(self, parsed: Any, fields: tuple[str, ...] | None = None) -> None:
        self._parsed = parsed
        self._fields = fields
        self._named: dict[str, Any] = {}
        fastavro.parse_schema(parsed, self._named)  # fills the named types, as the writer does
        try:
            self._fast = _Compiler(self._named).compile(parsed)
        except (SyntaxError, RecursionError):
            # Beyond Python's 20 nested blocks (arrays of arrays of ...): fastavro writes all.
            self._fast = _fastavro_only

    def write(self, out: bytearray, datum: Any) -> None:
        """Append ``datum``'s Avro binary encoding to ``out``."""
        start = len(out)
        try:
            self._fast(datum, out)
        except Exception:  # noqa: BLE001 - not hidden: fastavro writes it, or raises its error
            self._fastavro(out, start, datum)

    def encode(self, datum: Any) -> bytes:
        out = bytearray()
        self.write(out, datum)
        return bytes(out)

    def encode_many(self, datums: Iterable[Any], prefix: bytes = b"") -> list[bytes]:
        """Each datum's encoding after ``prefix``, written into one buffer and then cut."""
        out = bytearray()
        ends = []
        fast = self._fast
        for datum in datums:
            out += prefix
            start = len(out)
            try:
                fast(datum, out)
            except Exception:  # noqa: BLE001 - as in write()
                self._fastavro(out, start, datum)
            ends.append(len(out))
        whole = bytes(out)
        start = 0
        encoded = []
        for end in ends:
            encoded.append(whole[start:end])
            start = end
        return encoded

    def _fastavro(self, out: bytearray, start: int, datum: Any) -> None:
        """Drop what the compiled code wrote from ``start``; fastavro writes ``datum``."""
        del out[start:]
        if self._fields is not None:
            datum = {k: datum[k] for k in self._fields}
        write_data(out, datum, self._parsed, self._named, "", _OPTIONS)


def _fastavro_only(datum: Any, out: bytearray) -> None:
    raise _Miss


class _Compiler:
    """Turns one parsed schema into the source of a function ``top(v, out)``."""

    def __init__(self, named: dict[str, Any]) -> None:
        self.named = named
        self.lines: list[str] = []
        self.records: dict[str, str] = {}  # full name -> function name
        self.consts: dict[str, Any] = {
            "_Miss": _Miss, "_wd": write_data, "_OPT": _OPTIONS,
            "_NS": named, "_Decimal": Decimal, "_pf": struct.Struct("<f").pack,
            "_pd": struct.Struct("<d").pack,
        }
        self.depth = 0

    def compile(self, parsed: Any) -> Any:
        body: list[str] = []
        self.emit(parsed, "v", body, "    ")
        source = "\n".join([*self.lines, "def top(v, out):", *body, ""])
        scope = dict(self.consts)
        exec(compile(source, "<avro writer>", "exec"), scope)  # noqa: S102 - source built here from the schema
        if len(body) == 1 and body[0].endswith("(v, out)"):  # a record: its function is top
            return scope[body[0].strip().split("(")[0]]
        return scope["top"]

    def const(self, value: Any) -> str:
        name = f"_c{len(self.consts)}"
        self.consts[name] = value
        return name

    def var(self) -> str:
        self.depth += 1
        return f"v{self.depth}"

    def resolve(self, s: Any) -> Any:
        """A named type's definition for a reference to it; anything else unchanged."""
        if isinstance(s, str) and s not in _PRIMITIVES:
            return self.named[s]
        return s

    def handled(self, s: Any, seen: frozenset[str] = frozenset()) -> bool:
        """Whether the compiled code writes every value of ``s`` itself, so its checks
        decide what fits ``s`` as fastavro's validation would (a union branch must)."""
        s = self.resolve(s)
        if isinstance(s, str):
            return True
        if isinstance(s, list):
            return False
        kind, logical = s["type"], s.get("logicalType")
        key = f"{kind}-{logical}" if logical else ""
        if key in LOGICAL_WRITERS and key not in _NATIVE_LOGICAL:
            return False
        if kind in ("record", "error"):
            if s["name"] in seen:
                return True
            inner = seen | {s["name"]}
            return all(self.handled(f["type"], inner) for f in s["fields"])
        if kind == "array":
            return self.handled(s["items"], seen)
        if kind == "map":
            return self.handled(s["values"], seen)
        return kind in _PRIMITIVES or kind in ("enum", "fixed")

    def emit(self, s: Any, v: str, out: list[str], ind: str) -> None:  # noqa: C901, PLR0912 - one branch per Avro type
        """Append code writing value ``v`` of schema ``s``; raise ``_Miss`` on a value
        outside what is certain (types and ranges as fastavro's union validation)."""
        s = self.resolve(s)
        if isinstance(s, list):
            self.union(s, v, out, ind)
            return
        if isinstance(s, str):
            self.primitive(s, v, out, ind)
            return
        kind, logical = s["type"], s.get("logicalType")
        key = f"{kind}-{logical}" if logical else ""
        if key in LOGICAL_WRITERS:
            if key in ("bytes-decimal", "fixed-decimal"):
                out.append(f"{ind}if type({v}) is _Decimal: "
                           f"{v} = {self.const(LOGICAL_WRITERS[key])}({v}, {self.const(s)})")
            elif key not in _NATIVE_LOGICAL:
                out.append(f"{ind}_wd(out, {v}, {self.const(s)}, _NS, '', _OPT)")
                return
        if kind in _PRIMITIVES:
            self.primitive(kind, v, out, ind)
        elif kind in ("record", "error"):
            out.append(f"{ind}{self.record(s)}({v}, out)")
        elif kind == "enum":
            codes = {sym: zigzag_varint(i) for i, sym in reversed(list(enumerate(s["symbols"])))}
            b = self.var()
            out.append(f"{ind}{b} = {self.const(codes)}.get({v}) if type({v}) is str else None")
            out.append(f"{ind}if {b} is None: raise _Miss")
            out.append(f"{ind}out += {b}")
        elif kind == "fixed":
            out.append(f"{ind}if (type({v}) is not bytes and type({v}) is not bytearray) "
                       f"or len({v}) != {int(s['size'])}: raise _Miss")
            out.append(f"{ind}out += {v}")
        elif kind == "array":
            item = self.var()
            out.append(f"{ind}if type({v}) is not list: raise _Miss")
            out.append(f"{ind}if {v}:")
            self.count(f"len({v})", out, ind + "    ")
            out.append(f"{ind}    for {item} in {v}:")
            self.emit(s["items"], item, out, ind + "        ")
            out.append(f"{ind}out.append(0)")
        elif kind == "map":
            k, item = self.var(), self.var()
            out.append(f"{ind}if type({v}) is not dict: raise _Miss")
            out.append(f"{ind}if {v}:")
            self.count(f"len({v})", out, ind + "    ")
            out.append(f"{ind}    for {k}, {item} in {v}.items():")
            self.primitive("string", k, out, ind + "        ")
            self.emit(s["values"], item, out, ind + "        ")
            out.append(f"{ind}out.append(0)")
        else:  # a type fastavro knows and this code does not: fastavro writes the value
            out.append(f"{ind}_wd(out, {v}, {self.const(s)}, _NS, '', _OPT)")

    def count(self, n: str, out: list[str], ind: str) -> None:
        """A non-negative long (a length or a count): one byte below 64."""
        out.append(f"{ind}n = {n}")
        out.append(f"{ind}if n < 64: out.append(n << 1)")
        out.append(f"{ind}else: {_LONG % 'n'}")

    def primitive(self, kind: str, v: str, out: list[str], ind: str) -> None:
        if kind == "null":
            out.append(f"{ind}if {v} is not None: raise _Miss")
        elif kind == "boolean":
            out.append(f"{ind}if {v} is True: out.append(1)")
            out.append(f"{ind}elif {v} is False: out.append(0)")
            out.append(f"{ind}else: raise _Miss")
        elif kind in ("int", "long"):
            # Beyond -64..63 fastavro's own long writer: exact by construction, and it
            # raises OverflowError beyond 64 bits. An int field takes 32 bits only: fastavro
            # writes more, but its union validation refuses them, so they are not certain.
            out.append(f"{ind}if type({v}) is not int: raise _Miss")
            out.append(f"{ind}if -64 <= {v} < 64: out.append(({v} << 1) ^ ({v} >> 63))")
            if kind == "int":
                out.append(f"{ind}elif -2147483648 <= {v} < 2147483648: {_LONG % v}")
                out.append(f"{ind}else: raise _Miss")
            else:
                out.append(f"{ind}else: {_LONG % v}")
        elif kind in ("float", "double"):
            pack = "_pf" if kind == "float" else "_pd"
            out.append(f"{ind}if type({v}) is not float and type({v}) is not int: raise _Miss")
            out.append(f"{ind}out += {pack}({v})")
        elif kind in ("bytes", "string"):
            if kind == "string":
                b = self.var()
                out.append(f"{ind}if type({v}) is not str: raise _Miss")
                out.append(f"{ind}{b} = {v}.encode()")
            else:
                b = v
                out.append(f"{ind}if type({v}) is not bytes and type({v}) is not bytearray: "
                           "raise _Miss")
            self.count(f"len({b})", out, ind)
            out.append(f"{ind}out += {b}")
        else:  # pragma: no cover - _PRIMITIVES is the list above
            raise AssertionError(kind)

    def record(self, s: dict[str, Any]) -> str:
        """The name of the function writing records of ``s`` (compiled on first use)."""
        name = self.records.get(s["name"])
        if name is not None:
            return name
        name = self.records[s["name"]] = f"r{len(self.records)}"
        body = ["    if type(v) is not dict: raise _Miss"]
        for field in s["fields"]:
            fv = self.var()
            body.append(f"    {fv} = v[{field['name']!r}]")
            self.emit(field["type"], fv, body, "    ")
        self.lines += [f"def {name}(v, out):", *body, ""]
        return name

    def union(self, s: list[Any], v: str, out: list[str], ind: str) -> None:
        """``null`` plus one type written here; any other union by fastavro, which picks
        the branch (tuple notation, validation, "float" giving way to "double")."""
        kinds = [self.resolve(b) for b in s]
        if len(s) != 2 or "null" not in kinds or not self.handled(s[1 - kinds.index("null")]):
            out.append(f"{ind}_wd(out, {v}, {self.const(s)}, _NS, '', _OPT)")
            return
        null = kinds.index("null")
        other = self.resolve(s[1 - null])
        out.append(f"{ind}if {v} is None: out.append({2 * null})")
        out.append(f"{ind}else:")
        out.append(f"{ind}    out.append({2 * (1 - null)})")
        if isinstance(other, dict) and other["type"] in ("record", "error"):
            # fastavro refuses the branch for a record datum whose "-type" names another type
            out.append(f"{ind}    if type({v}) is dict and '-type' in {v}: raise _Miss")
        self.emit(other, v, out, ind + "    ")


def zigzag_varint(n: int) -> bytes:
    """Avro's encoding of an ``int``/``long``: zigzag, then a base-128 varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
