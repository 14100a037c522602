"""How a value converter says no: the :data:`BAD` result, the raw error list, the wording.

A converter is ``conv(value, errs)``: it returns the datum fastavro writes, or
:data:`BAD`. With ``errs`` None it only refuses; with a list it also appends
``[reason]``, the reason naming what was expected and what was received. Shared by the
leaf types (:mod:`onepipe.schemas.logical_types`) and the structure compiled around them
(:mod:`onepipe.schemas.validation_compile`). The wording helpers run on the error path
only, never for a good record, and never raise: they describe whatever a caller sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

#: Raw errors of one value: ``[reason, innermost path segment, ..., outermost segment]``.
Errs = list[list[Any]]
Conv = Callable[[Any, Errs | None], Any]


class _Sentinel:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<invalid>"


#: What a converter returns for a value it refuses; never a datum.
BAD: Any = _Sentinel()


def refuse(
    errs: Errs | None, expected: str, value: Any, detail: str = "", bare: bool = False
) -> Any:
    """Return :data:`BAD`; with an error list, say what was expected and what came."""
    if errs is not None:
        got = show(value) if bare else describe(value)
        errs.append([f"expected {expected}, got {got}" + (f" ({detail})" if detail else "")])
    return BAD


# --- wording (error path only) ----------------------------------------------------------


def show(value: int | float) -> str:
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"an int of {value.bit_length()} bits"  # repr fails past 4300 digits
    return int.__repr__(value) if isinstance(value, int) else float.__repr__(value)


def quote(text: str) -> str:
    return str.__repr__(text if len(text) <= 60 else text[:57] + "...")


def describe(value: Any) -> str:
    """``bool true``, ``int 5``, ``string 'x'``, ``array of 3 items`` ... (never raises)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool true" if value else "bool false"
    if isinstance(value, int | float):
        text = show(value)
        return (
            text
            if text.startswith("an ")
            else f"{'int' if isinstance(value, int) else 'float'} {text}"
        )
    if isinstance(value, str):
        return f"string {quote(value)}"
    if isinstance(value, list):
        return f"array of {len(value)} items"
    if isinstance(value, dict):
        keys = [quote(k) if isinstance(k, str) else describe(k) for k in list(value)[:6]]
        return f"object with keys {listing(keys, 5)}" if keys else "empty object"
    return f"a Python {type(value).__name__}, which is not a JSON value"


def listing(items: Iterable[str], limit: int = 20) -> str:
    names = list(items)
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")

