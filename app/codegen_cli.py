"""``onepipe codegen TOPIC``: typed record classes for a topic, from the registry.

Reads the registry log once (as every one-shot command does: a :class:`RegistryStore`
replayed to its end, then closed) and prints the module
:func:`~onepipe.schemas.typed.generate_module` writes for the topic's reader schema (its
value subject's latest version, or ``--version N``); ``--output FILE`` writes it there
instead. An unknown topic or version is a :class:`ConfigError` (exit status 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from onepipe.app.settings import Settings
from onepipe.schemas.errors import ConfigError, NotFoundError
from onepipe.schemas.topic_names import value_subject
from onepipe.schemas.typed import generate_module
from onepipe.tables.registry_store import RegistryStore

__all__ = ["add_codegen_command", "run_codegen"]


def add_codegen_command(sub: Any) -> None:
    """``codegen TOPIC [--version N] [--output FILE]`` on the CLI's subparsers."""
    codegen = sub.add_parser("codegen", help="typed record classes (Python dataclasses) for a "
                             "topic's schema")
    codegen.add_argument("topic")
    codegen.add_argument("--version", type=int, default=None,
                         help="this version of the topic's value subject (default: the "
                         "latest, the schema records are read with)")
    codegen.add_argument("--output", type=Path, default=None,
                         help="write the module to FILE instead of printing it")


async def run_codegen(settings: Settings, args: argparse.Namespace) -> int:
    """Print (or write) the module; exit status 0."""
    if args.version is not None and args.version < 1:
        raise ConfigError(f"--version must be 1 or more, got {args.version}")
    async with RegistryStore(settings.kafka, settings.registry_topic,
                             replication_factor=settings.replication_factor,
                             fetch_wait_ms=settings.registry_fetch_wait_ms) as store:
        state = store.state
        if args.topic not in state.topics:
            raise ConfigError(f"topic {args.topic!r} is not registered; `onepipe apply` "
                              "registers a catalog folder")
        try:
            found = state.version(value_subject(args.topic),
                                  "latest" if args.version is None else args.version)
        except NotFoundError as exc:
            raise ConfigError(f"topic {args.topic!r}: {exc.message}") from exc
    source = generate_module(args.topic, found.schema, schema_id=found.schema_id,
                             version=found.version)
    if args.output is None:
        print(source, end="")
    else:
        args.output.write_text(source)
        print(f"wrote {args.output} (topic {args.topic!r}, schema id {found.schema_id}, "
              f"version {found.version})")
    return 0
