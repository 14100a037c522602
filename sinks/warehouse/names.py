"""Warehouse table names: a topic's default table, and the names a user may give.

The rule is the online sinks' (a catalog sink's ``table``, onepipe.schemas.metadata): a
name every SQL dialect takes unquoted, ``[A-Za-z_][A-Za-z0-9_]{0,62}``, and not one of
onepipe's own (``_onepipe_*``, ``onepipe_loads``). A topic's default table maps every
other character to ``_`` (``orders.v2-eu`` -> ``orders_v2_eu``), so it can be queried
without quotes.
"""

from __future__ import annotations

import re

from onepipe.schemas.errors import ConfigError
from onepipe.schemas.metadata import TABLE_NAME

__all__ = ["LOADS_TABLE", "check_table", "warehouse_table"]

#: The bookkeeping table of every load into one database.
LOADS_TABLE = "onepipe_loads"


def check_table(name: str) -> str:
    """``name`` when it is a table name the load may use; ConfigError saying why not."""
    if not TABLE_NAME.fullmatch(name):
        raise ConfigError(f"a warehouse table name must match {TABLE_NAME.pattern} (as a "
                          f"catalog sink's table); got {name!r}")
    if name.lower().startswith("_onepipe_") or name.lower() == LOADS_TABLE:
        raise ConfigError(f"{name!r} is a name onepipe keeps for its own tables; give "
                          "--table another name")
    return name


def warehouse_table(topic: str) -> str:
    """The default table of ``topic``: ``.``, ``-`` (anything outside ``[A-Za-z0-9_]``)
    as ``_``, and a leading digit prefixed with ``t_``."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", topic)
    if name[:1].isdigit():
        name = f"t_{name}"
    if len(name) > 63:
        raise ConfigError(f"topic {topic!r} makes a table name longer than 63 characters; "
                          "name the table with --table")
    return check_table(name)
