"""Reading a catalog folder: one ``*.yaml`` per topic, its Avro schema beside it or inline.

Parsing only (no broker, no registry): ``onepipe apply`` (onepipe.app.catalog) applies what
this reads, and the agents' test kit (onepipe.testing) builds its in-memory registry from
the same files, so a test sees the topics exactly as a worker would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from onepipe.schemas.errors import ConfigError

__all__ = ["CatalogEntry", "load_catalog"]


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One topic declared in a catalog folder."""

    #: The YAML file it came from.
    path: Path
    topic: str
    #: The schema as JSON data (loaded from the .avsc beside the file, or inline).
    schema: Any
    #: The YAML mapping itself.
    entry: dict[str, Any]


def load_catalog(folder: Path) -> list[CatalogEntry]:
    """Read every ``*.yaml``/``*.yml`` in ``folder``; raise ConfigError naming the file."""
    if not folder.is_dir():
        raise ConfigError(f"catalog folder {str(folder)!r} does not exist or is not a folder")
    entries: list[CatalogEntry] = []
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    if not files:
        raise ConfigError(f"catalog folder {str(folder)!r} holds no *.yaml files")
    for path in files:
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("topic"), str):
            raise ConfigError(f"{path}: expected a mapping with a `topic:` name")
        schema = data.get("schema")
        if isinstance(schema, str) and not schema.lstrip().startswith(("{", "[", '"')):
            schema_path = path.parent / schema
            if not schema_path.is_file():
                raise ConfigError(f"{path}: schema file {schema!r} not found beside it")
            schema = schema_path.read_text()
        try:
            schema_data = yaml.safe_load(schema) if isinstance(schema, str) else schema
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: schema is not valid JSON: {exc}") from exc
        entries.append(CatalogEntry(path, data["topic"], schema_data, data))
    return entries
