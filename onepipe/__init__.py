"""onepipe: one way to publish data, one schema authority, proof that every system agrees.

This module is the public API for developers: import from ``onepipe`` and nothing
deeper. The names in ``__all__`` are kept stable (tests/test_public_api.py lists them);
the subpackages (``onepipe.agents``, ``onepipe.tables``, ...) are the implementation and
may change between releases.

- Writing agents over registered topics: :func:`agent` (per record, ``async for value in
  stream``: a :class:`Stream`) and :func:`batch_agent` (one call per partition batch: a
  :class:`Batch`), the :class:`Record` envelope of each value, state in :class:`Table`
  and :class:`WindowTable` (windows :func:`tumbling`, :func:`hopping`, each a
  :class:`Window`), and the :class:`Delivery` of a produced record.
- The catalog model: :class:`TopicMetadata` (key, order rule, partition time, checks) and
  the derived topic names (:func:`unique_topic` is where each key's winning version is).
- Reaching the platform: :class:`Settings` (read from ``ONEPIPE_*`` variables by
  :func:`load_settings`), :class:`KafkaClients` (every Kafka client onepipe builds),
  :func:`open_lake` (the raw and clean lake, local or S3).
- Errors: every error onepipe raises derives from :class:`OnepipeError`; the tree is drawn
  in its module, ``onepipe.schemas.errors``.

Names are loaded on first use, so ``import onepipe`` stays cheap for the CLI and for
tools that need one name (the agents pull in aiokafka and RocksDB).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    # developers' agents
    "agent": "onepipe.agents.framework.declare",
    "batch_agent": "onepipe.agents.framework.declare",
    "Stream": "onepipe.agents.framework.stream",
    "Batch": "onepipe.agents.framework.stream",
    "Record": "onepipe.agents.framework.stream",
    "Table": "onepipe.tables.state",
    "WindowTable": "onepipe.tables.state",
    "Window": "onepipe.tables.state",
    "tumbling": "onepipe.tables.state",
    "hopping": "onepipe.tables.state",
    "Delivery": "onepipe.sinks.publish.publisher",
    # the catalog
    "TopicMetadata": "onepipe.schemas.metadata",
    "OrderRule": "onepipe.schemas.metadata",
    "Checks": "onepipe.schemas.metadata",
    "ArchivePolicy": "onepipe.schemas.metadata",
    "unique_topic": "onepipe.schemas.topic_names",
    "repartition_topic": "onepipe.schemas.topic_names",
    "checksums_topic": "onepipe.schemas.topic_names",
    # reaching the platform
    "Settings": "onepipe.app.settings",
    "load_settings": "onepipe.app.settings",
    "KafkaClients": "onepipe.tables.kafka.clients",
    "LakeStore": "onepipe.sinks.lake.store",
    "open_lake": "onepipe.sinks.lake.open",
    # errors
    "OnepipeError": "onepipe.schemas.errors",
    "ConfigError": "onepipe.schemas.errors",
    "SchemaError": "onepipe.schemas.errors",
    "MetadataError": "onepipe.schemas.errors",
    "RecordValidationError": "onepipe.schemas.errors",
    "CodecError": "onepipe.schemas.errors",
    "NotFoundError": "onepipe.schemas.errors",
    "BrokerError": "onepipe.schemas.errors",
    "LakeError": "onepipe.schemas.errors",
}

#: Written out (not derived from _EXPORTS) so linters and readers see it; a test keeps
#: the two equal.
__all__ = ["ArchivePolicy", "Batch", "BrokerError", "Checks", "CodecError", "ConfigError",
           "Delivery", "KafkaClients", "LakeError", "LakeStore", "MetadataError",
           "NotFoundError", "OnepipeError", "OrderRule", "Record", "RecordValidationError",
           "SchemaError", "Settings", "Stream", "Table", "TopicMetadata", "Window",
           "WindowTable", "__version__", "agent", "batch_agent", "checksums_topic", "hopping",
           "load_settings", "open_lake", "repartition_topic", "tumbling", "unique_topic"]

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from onepipe.agents.framework.declare import agent, batch_agent
    from onepipe.agents.framework.stream import Batch, Record, Stream
    from onepipe.app.settings import Settings, load_settings
    from onepipe.schemas.errors import (
        BrokerError,
        CodecError,
        ConfigError,
        LakeError,
        MetadataError,
        NotFoundError,
        OnepipeError,
        RecordValidationError,
        SchemaError,
    )
    from onepipe.schemas.metadata import ArchivePolicy, Checks, OrderRule, TopicMetadata
    from onepipe.schemas.topic_names import checksums_topic, repartition_topic, unique_topic
    from onepipe.sinks.lake.open import open_lake
    from onepipe.sinks.lake.store import LakeStore
    from onepipe.sinks.publish.publisher import Delivery
    from onepipe.tables.kafka.clients import KafkaClients
    from onepipe.tables.state import Table, Window, WindowTable, hopping, tumbling


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'onepipe' has no attribute {name!r}; the public names "
                             f"are onepipe.__all__")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
