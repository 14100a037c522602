"""``onepipe tokens add|ls|rm``: the API tokens in ONEPIPE_TOKENS_FILE (or ``--file``).

``add`` prints the new token alone on stdout, once, for scripts::

    TOKEN=$(onepipe tokens add ci --publish 'widgets*')

and what it may do on stderr. The file keeps only a salted hash: a lost token cannot be
shown again; remove it and add another. Running workers that read the same file accept
or refuse the change within about a second.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from onepipe.app.auth.token_file import add_token, read_tokens, remove_token
from onepipe.app.settings import Settings
from onepipe.schemas.errors import ConfigError

__all__ = ["add_tokens_command", "run_tokens"]


def add_tokens_command(subparsers: Any) -> None:
    """Add ``tokens`` to the ``onepipe`` sub-commands (an argparse subparsers object)."""
    tokens = subparsers.add_parser(
        "tokens", help="API tokens: add, ls, rm (ONEPIPE_TOKENS_FILE)",
        description=(__doc__ or "").split("\n\n")[0],
        epilog=(__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    file_help = "the tokens file (default: ONEPIPE_TOKENS_FILE)"
    add = tokens_sub.add_parser("add", help="create a token; prints it once on stdout")
    add.add_argument("name", help="a unique name: letters, digits, '.', '_', '-' (64 at most)")
    add.add_argument("--publish", action="append", default=[], metavar="PATTERN",
                     help="a topic it may publish to, or a prefix ending in '*' "
                     "(repeatable; quote it in a shell: 'widgets*')")
    add.add_argument("--admin", action="store_true",
                     help="it may change the registry and the catalog (register, delete, "
                     "config, mode, topic metadata)")
    add.add_argument("--file", type=Path, default=None, help=file_help)
    ls = tokens_sub.add_parser("ls", help="name, publish patterns, admin, created")
    ls.add_argument("--file", type=Path, default=None, help=file_help)
    rm = tokens_sub.add_parser("rm", help="remove a token (workers refuse it within ~1 s)")
    rm.add_argument("name")
    rm.add_argument("--file", type=Path, default=None, help=file_help)


def run_tokens(settings: Settings, args: argparse.Namespace) -> int:
    path: Path | None = args.file or settings.tokens_file
    if path is None:
        raise ConfigError("no tokens file: set ONEPIPE_TOKENS_FILE to its path (the same "
                          "the workers read), or pass --file PATH")
    if args.tokens_command == "add":
        token, entry = add_token(path, args.name, args.publish, args.admin)
        print(token, flush=True)
        print(f"token {entry.name!r} added to {path}: {_rights(entry.publish, entry.admin)}. "
              "It is shown this once; keep it in a secret store.", file=sys.stderr)
        return 0
    if args.tokens_command == "rm":
        if remove_token(path, args.name) is None:
            known = ", ".join(sorted(e.name for e in read_tokens(path))) or "none"
            print(f"error: no token named {args.name!r} in {path} (tokens: {known})",
                  file=sys.stderr)
            return 1
        print(f"token {args.name!r} removed from {path}; workers refuse it within about a "
              "second", file=sys.stderr)
        return 0
    entries = read_tokens(path)
    if not entries:
        print(f"no tokens in {path}; `onepipe tokens add NAME` creates one", file=sys.stderr)
        return 0
    width = max(len("NAME"), *(len(e.name) for e in entries))
    print(f"{'NAME':<{width}}  ADMIN  CREATED (UTC)        PUBLISH")
    for e in sorted(entries, key=lambda e: e.name):
        print(f"{e.name:<{width}}  {'yes' if e.admin else 'no':<5}  "
              f"{e.created.strftime('%Y-%m-%d %H:%M:%S'):<19}  {' '.join(e.publish) or '-'}")
    return 0


def _rights(publish: tuple[str, ...], admin: bool) -> str:
    may = [f"may publish to {', '.join(publish)}"] if publish else ["may not publish"]
    may.append("is admin (registry and catalog changes)" if admin else "is not admin")
    return "; ".join(may)
