"""The public module ``onepipe``: a curated ``__all__`` that developers can rely on.

Adding or removing a public name is a decision, so the expected list is written out here
(as httpx tests its own ``__all__``); every name must resolve, be documented, and come
from inside onepipe.
"""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import onepipe

PUBLIC = [
    "ArchivePolicy",
    "Batch",
    "BrokerError",
    "Checks",
    "CodecError",
    "ConfigError",
    "Delivery",
    "KafkaClients",
    "LakeError",
    "LakeStore",
    "MetadataError",
    "NotFoundError",
    "OnepipeError",
    "OrderRule",
    "Record",
    "RecordValidationError",
    "SchemaError",
    "Settings",
    "Stream",
    "Table",
    "TopicMetadata",
    "Window",
    "WindowTable",
    "__version__",
    "agent",
    "batch_agent",
    "checksums_topic",
    "hopping",
    "load_settings",
    "open_lake",
    "repartition_topic",
    "tumbling",
    "unique_topic",
]


def test_all_is_the_curated_list() -> None:
    assert sorted(onepipe.__all__) == PUBLIC
    assert sorted(["__version__", *onepipe._EXPORTS]) == PUBLIC


@pytest.mark.parametrize("name", [n for n in PUBLIC if n != "__version__"])
def test_every_public_name_resolves_to_documented_onepipe_code(name: str) -> None:
    value = getattr(onepipe, name)
    assert value.__module__.startswith("onepipe."), value.__module__
    assert inspect.getdoc(value), f"onepipe.{name} has no docstring"


def test_errors_share_one_root() -> None:
    errors = [getattr(onepipe, n) for n in PUBLIC if n.endswith("Error")]
    assert all(issubclass(e, onepipe.OnepipeError) for e in errors)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from onepipe import *", namespace)  # noqa: S102 - the statement under test
    assert sorted(k for k in namespace if k != "__builtins__") == PUBLIC


def test_unknown_names_say_where_to_look() -> None:
    with pytest.raises(AttributeError, match="onepipe.__all__"):
        getattr(onepipe, "DedupAgent")  # noqa: B009 - a name that is not public


def test_import_onepipe_is_cheap() -> None:
    """The CLI imports onepipe on every call: the agents' clients load on first use."""
    code = ("import sys, onepipe; heavy = [m for m in ('faust', 'aiokafka', 'pyarrow', "
            "'duckdb', 'polars') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
