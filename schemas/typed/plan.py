"""Matching a dataclass against a schema node: the check and the converter in one walk.

A :class:`Planner` walks an annotation and a :mod:`~onepipe.schemas.typed.model` node side
by side. Where they disagree it records ``(path, reason)``; where they agree it returns
the function that turns fastavro's value into the annotated one, or ``None`` when the
value is already right (most fields: no call at all on the hot path). So the rules of
:func:`~onepipe.schemas.typed.check_record_type` and what
:func:`~onepipe.schemas.typed.record_converter` does can never drift apart.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import types
import typing
import uuid
from collections.abc import Callable
from typing import Any

from onepipe.schemas.typed.model import (
    AVRO_NAME,
    ArrayNode,
    EnumNode,
    LeafNode,
    MapNode,
    Node,
    RecordNode,
    UnionNode,
)

__all__ = ["Conv", "Planner", "describe"]

#: Turns one decoded value into the annotated one.
Conv = Callable[[Any], Any]
_NONE = type(None)
_SEQUENCES = (list, collections.abc.Sequence, collections.abc.MutableSequence)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def describe(tp: Any) -> str:
    """An annotation as a reader writes it: ``list[str]``, ``Address | None``."""
    if tp is _NONE or tp is None:
        return "None"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__qualname__ if tp.__module__ != "builtins" else tp.__name__
    return repr(tp).replace("typing.", "").replace("collections.abc.", "")


def _python_of(node: Node) -> type:
    """The Python type fastavro's reader returns for ``node``."""
    if isinstance(node, LeafNode):
        return node.python
    if isinstance(node, EnumNode):
        return str
    if isinstance(node, ArrayNode):
        return list
    return dict  # record or map (a union is never directly inside a union)


class Planner:
    """One walk: ``problems`` collects what does not fit; :meth:`plan` returns converters."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        # (class, id(record node)) -> the record's converter, filled once built: a
        # recursive record refers to its own cell.
        self._cells: dict[tuple[type, int], list[Conv]] = {}

    def fail(self, path: str, reason: str) -> None:
        self.problems.append((path, reason))

    def plan(self, tp: Any, node: Node, path: str) -> Conv | None:
        """The converter from ``node``'s decoded value to ``tp``; None: no conversion."""
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
        if tp is Any or tp is object:
            return None
        members = _union_members(tp)
        if members is not None:
            return self._union(members, node, path)
        if isinstance(node, UnionNode):
            if node.nullable:
                self.fail(path, f"not Optional, but the schema's {node.label} may be null; "
                          f"annotate `{describe(tp)} | None`")
                return None
            return self._union((tp,), node, path)
        if isinstance(node, LeafNode):
            return self._leaf(tp, node, path)
        if isinstance(node, EnumNode):
            return self._enum(tp, node, path)
        if isinstance(node, ArrayNode):
            return self._array(tp, node, path)
        if isinstance(node, MapNode):
            return self._map(tp, node, path)
        return self._record(tp, node, path)

    def record(self, cls: type, node: RecordNode, path: str) -> Conv:
        """The converter of a dataclass for a record node (checked field by field)."""
        key = (cls, id(node))
        if key in self._cells:  # recursion: the record's converter, once it is built
            built = self._cells[key]
            return lambda value: built[0](value)
        cell: list[Conv] = []
        self._cells[key] = cell
        args = self._args(cls, node, path)
        convert = _never if args is None else _constructor(cls, args)
        cell.append(convert)
        return convert

    def columns(self, cls: type, node: RecordNode, path: str
                ) -> tuple[tuple[str, ...], Callable[[list[list[Any]], int], list[Any]]]:
        """The Avro fields ``cls`` reads and the function from their columns (decoded
        values, in that order, and the row count) to the instances: :meth:`record`'s,
        row by row."""
        args = self._args(cls, node, path) or []
        convert: Callable[[list[list[Any]], int], list[Any]] = _constructor(
            cls, args, columns=True)
        return tuple(avro for _, avro, _, _ in args), convert

    def _args(self, cls: type, node: RecordNode, path: str
              ) -> list[tuple[str, str, Conv | None, bool]] | None:
        """(field name, Avro name, converter, kw_only) of each field the schema fills."""
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except (NameError, TypeError) as exc:
            self.fail(path, f"its annotations do not resolve ({exc}); import the names they "
                      "use at module level")
            return None
        by_name = {f.name: f for f in node.fields}
        args: list[tuple[str, str, Conv | None, bool]] = []
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            avro = f.metadata.get(AVRO_NAME, f.name)
            schema_field = by_name.get(avro)
            if schema_field is None:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    known = ", ".join(by_name) or "none"
                    self.fail(f"{path}.{f.name}", f"missing field: {node.label} has no field "
                              f"{avro!r} (its fields: {known}); give it a default or remove it")
                continue
            conv = self.plan(hints[f.name], schema_field.type, f"{path}.{f.name}")
            args.append((f.name, avro, conv, f.kw_only is True))
        return args

    # ------------------------------------------------------------------ node kinds
    def _leaf(self, tp: Any, node: LeafNode, path: str) -> Conv | None:
        if tp is node.python or tp is None and node.python is _NONE:
            return None
        if node.python is uuid.UUID and tp is str:
            return str
        self._wrong(tp, node, path, describe(node.python))
        return None

    def _enum(self, tp: Any, node: EnumNode, path: str) -> Conv | None:
        if tp is str:
            return None
        if typing.get_origin(tp) is typing.Literal:
            missing = [s for s in node.symbols if s not in typing.get_args(tp)]
            if missing:
                self.fail(path, f"wrong type: the Literal lacks symbol(s) {missing} of "
                          f"{node.label}")
            return None
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            members = {m.value: m for m in tp}
            missing = [s for s in node.symbols if s not in members]
            if missing:
                self.fail(path, f"wrong type: {tp.__qualname__} has no member with value(s) "
                          f"{missing} of {node.label}")
            return members.__getitem__
        self._wrong(tp, node, path, "str, a Literal of its symbols or an enum.Enum")
        return None

    def _array(self, tp: Any, node: ArrayNode, path: str) -> Conv | None:
        origin, args = typing.get_origin(tp) or tp, typing.get_args(tp)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            item = self.plan(args[0], node.items, f"{path}[]")
            if item is None:
                return tuple
            each = item
            return lambda v: tuple([each(x) for x in v])
        if origin not in _SEQUENCES or origin is tuple:
            self._wrong(tp, node, path, "list[T], Sequence[T] or tuple[T, ...]")
            return None
        item = self.plan(args[0] if args else Any, node.items, f"{path}[]")
        return None if item is None else lambda v: [item(x) for x in v]

    def _map(self, tp: Any, node: MapNode, path: str) -> Conv | None:
        origin, args = typing.get_origin(tp) or tp, typing.get_args(tp)
        if origin not in _MAPPINGS or args and args[0] not in (str, Any):
            self._wrong(tp, node, path, "dict[str, T] or Mapping[str, T]")
            return None
        value = self.plan(args[1] if args else Any, node.values, f"{path}{{}}")
        return None if value is None else lambda v: {k: value(x) for k, x in v.items()}

    def _record(self, tp: Any, node: RecordNode, path: str) -> Conv | None:
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self.record(tp, node, path)
        origin, args = typing.get_origin(tp) or tp, typing.get_args(tp)
        if origin in _MAPPINGS and (not args or args[0] in (str, Any) and args[1] in (
                Any, object)):
            return None
        self._wrong(tp, node, path, "a dataclass or dict[str, Any]")
        return None

    def _union(self, members: tuple[Any, ...], node: Node, path: str) -> Conv | None:
        """An annotation ``A | B | None`` against a node (a union or not)."""
        optional = _NONE in members or None in members
        rest = [m for m in members if m is not _NONE and m is not None]
        branches = node.branches if isinstance(node, UnionNode) else [node]
        pairs: list[tuple[Node, Conv | None]] = []
        for branch in branches:
            if isinstance(branch, LeafNode) and branch.base == "null":
                if not optional:
                    self.fail(path, f"not Optional, but the schema's {node.label} may be "
                              f"null; add `| None` to {describe(_join(rest))}")
                continue
            if len(rest) == 1:  # the usual `T | None`: the member's own problems show
                pairs.append((branch, self.plan(rest[0], branch, path)))
                continue
            for member in rest:
                trial = Planner()
                conv = trial.plan(member, branch, path)
                if not trial.problems:
                    pairs.append((branch, conv))
                    break
            else:
                self._wrong(_join(rest), branch, path, "a member for every branch")
        self._ambiguous(pairs, path)
        return _dispatch(pairs)

    def _ambiguous(self, pairs: list[tuple[Node, Conv | None]], path: str) -> None:
        """Refuse record branches a decoded value cannot tell apart: fastavro returns a
        record as a dict without its name, so two records with the same field names
        would both convert to the first one's class (and be sent back as it)."""
        seen: dict[frozenset[str], Node] = {}
        for node, conv in pairs:
            if not isinstance(node, RecordNode):
                continue
            names = frozenset(f.name for f in node.fields)
            first = seen.setdefault(names, node)
            if first is not node and (conv is not None or any(
                    c is not None for n, c in pairs if n is first)):
                self.fail(path, f"ambiguous union: {first.label} and {node.label} have the "
                          "same field names, and a decoded value does not say which it "
                          "was; annotate the field dict[str, Any], or rename a field in "
                          "one of the records")

    def _wrong(self, tp: Any, node: Node, path: str, wanted: str) -> None:
        self.fail(path, f"wrong type: annotated {describe(tp)}, but the schema's "
                  f"{node.label} needs {wanted}")


def _union_members(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def _join(members: list[Any]) -> Any:
    return members[0] if len(members) == 1 else typing.Union[tuple(members)]  # noqa: UP007 - built at runtime


def _never(value: Any) -> Any:
    raise AssertionError("a converter of a class that did not pass the check")


def _dispatch(pairs: list[tuple[Node, Conv | None]]) -> Conv | None:
    """One converter for the branches of a union, chosen by the decoded value's type."""
    if all(conv is None for _, conv in pairs):
        return None
    if len(pairs) == 1:
        only = pairs[0][1]
        assert only is not None
        return lambda v: None if v is None else only(v)
    table: dict[type, list[tuple[Node, Conv | None]]] = {}
    for node, conv in pairs:
        table.setdefault(_python_of(node), []).append((node, conv))

    def convert(v: Any) -> Any:
        candidates = table.get(type(v))
        if candidates is None:
            return v
        conv = candidates[0][1] if len(candidates) == 1 else _pick(candidates, v)
        return v if conv is None else conv(v)

    return convert


def _pick(candidates: list[tuple[Node, Conv | None]], v: Any) -> Conv | None:
    """Which of several branches of one Python type decoded ``v`` (fastavro returns no
    branch name): the record whose fields are its keys, the enum that has it as a symbol."""
    for node, conv in candidates:
        if isinstance(node, RecordNode) and v.keys() == {f.name for f in node.fields}:
            return conv
        if isinstance(node, EnumNode) and v in node.symbols:
            return conv
    for node, conv in candidates:
        if not isinstance(node, RecordNode | EnumNode):
            return conv
    return candidates[0][1]


def _constructor(cls: type, args: list[tuple[str, str, Conv | None, bool]], *,
                 columns: bool = False) -> Callable[..., Any]:
    """``cls(...)`` from a decoded dict, as generated code: straight-line, no loop.

    ``columns``: from a list of columns instead (one per entry of ``args``), a list of
    instances: the same body in one loop over the rows, no dict per record.
    """
    env: dict[str, Any] = {"cls": cls, "new": object.__new__}
    values = {}
    for i, (name, avro, conv, _) in enumerate(args):
        values[name] = f"a{i}" if columns else f"d[{avro!r}]"
        if conv is not None:
            env[f"c{i}"] = conv
            values[name] = f"c{i}({values[name]})"
    if _plain_slots(cls):
        # A frozen dataclass's __init__ sets each field through object.__setattr__; the
        # slot descriptors set them at half the cost. Only where __init__ would do nothing
        # else: generated by dataclasses, no __post_init__, every field an init field.
        lines = ["o = new(cls)"]
        for i, f in enumerate(dataclasses.fields(cls)):
            env[f"s{i}"] = cls.__dict__[f.name].__set__
            if f.name in values:
                value = values[f.name]
            elif f.default is not dataclasses.MISSING:
                env[f"v{i}"], value = f.default, f"v{i}"
            else:
                env[f"v{i}"], value = f.default_factory, f"v{i}()"
            lines.append(f"s{i}(o, {value})")
    else:
        # By position while the dataclass's own positional order allows (cheaper), by
        # keyword after a gap (a field left to its default) or for kw_only fields.
        positional = [f.name for f in dataclasses.fields(cls) if f.init and not f.kw_only]
        parts, by_position = [], True
        for i, (name, _, _, kw_only) in enumerate(args):
            by_position = by_position and not kw_only and i < len(positional) and \
                positional[i] == name
            parts.append(values[name] if by_position else f"{name}={values[name]}")
        lines = [f"o = cls({', '.join(parts)})"]
    if columns:
        rows = (f"zip({', '.join(f'columns[{i}]' for i in range(len(args)))})" if args
                else "range(n)")
        source = (f"def convert(columns, n):\n    out = []\n    append = out.append\n"
                  f"    for {''.join(f'a{i}, ' for i in range(len(args))) or '_'} in {rows}:\n"
                  + "".join(f"        {line}\n" for line in lines)
                  + "        append(o)\n    return out\n")
    else:
        source = ("def convert(d):\n" + "".join(f"    {line}\n" for line in lines)
                  + "    return o\n")
    exec(compile(source, f"<record_converter {cls.__qualname__}>", "exec"), env)  # noqa: S102 - our own source; names are dataclass fields
    convert: Callable[..., Any] = env["convert"]
    return convert


def _plain_slots(cls: type) -> bool:
    """Whether building ``cls`` is only setting its slots (see :func:`_constructor`)."""
    init = cls.__dict__.get("__init__")
    code = getattr(init, "__code__", None)
    fields = dataclasses.fields(cls)
    return (
        code is not None and code.co_filename == "<string>"  # dataclasses' exec
        and not hasattr(cls, "__post_init__")
        and all(f.init and type(cls.__dict__.get(f.name)).__name__ == "member_descriptor"
                for f in fields)
    )
