"""``cli``: ``onepipe ...`` run in this process, the test's logging left as it was."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from onepipe.app.cli import main


@pytest.fixture
def cli() -> Iterator[Callable[..., int]]:
    """Run ``main(argv)``; its logging set-up (root level, handlers) is undone after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def run(*argv: str) -> int:
        return main(list(argv))

    try:
        yield run
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
