"""A schema a caller submits: bounded, then parsed off the event loop within a time bound.

Apache Avro's parser and compatibility checker are pure Python and grow with the square
of a schema's fields; run on the event loop, one large schema held every request of the
worker (80,000 fields: 45 s without an answer to ``/health``). So every schema that
comes through the API is measured against the settings' :class:`SchemaLimits` first,
then parsed in a thread: the loop keeps serving, and a parse that outlasts
``ONEPIPE_SCHEMA_CHECK_SECONDS`` is refused (the thread ends on its own; the limits bound
how long it can take).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from onepipe.app.settings import Settings
from onepipe.schemas.avro_schema import AvroSchema, parse_schema
from onepipe.schemas.errors import SchemaError

T = TypeVar("T")


async def parse_submitted(data: str | dict[str, Any] | list[Any], settings: Settings
                          ) -> AvroSchema:
    """``data`` parsed as a schema a caller sent; :class:`SchemaError` (422) otherwise."""
    return await off_loop(settings.schema_check_seconds, "parsing the schema", parse_schema,
                          data, settings.schema_limits)


async def off_loop(bound: float, what: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a thread, refused (422) after ``bound`` seconds (the settings'
    ``ONEPIPE_SCHEMA_CHECK_SECONDS``)."""
    try:
        async with asyncio.timeout(bound):
            return await asyncio.to_thread(fn, *args)
    except TimeoutError:
        raise SchemaError(
            f"{what} took longer than {bound:g} s (ONEPIPE_SCHEMA_CHECK_SECONDS); make the "
            "schema smaller (fewer fields, less nesting)") from None
