"""The state store: entries and position in one WriteBatch, reopen, close, reset."""

from __future__ import annotations

from pathlib import Path

import pytest

from onepipe.schemas.errors import StateError
from onepipe.tables.state.store import Position, StateStore


def test_entries_and_position_are_written_together_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "agent" / "t-0"
    store = StateStore(path)
    assert store.position == Position(0, 0, None)
    store.apply([(b"\x01ak1", b"1"), (b"\x01ak2", b"2"), (b"\x01bk1", b"3")],
                Position(10, 4, 1_000))
    store.apply([(b"\x01ak2", None)], Position(12, 6, 2_000))
    assert store.position == Position(12, 6, 2_000)
    store.close()
    store.close()  # harmless twice
    with StateStore(path) as reopened:
        assert reopened.position == Position(12, 6, 2_000)
        assert reopened.get(b"\x01ak1") == b"1"
        assert reopened.get_many([b"\x01ak1", b"\x01ak2", b"\x01bk1"]) == [b"1", None, b"3"]
        assert list(reopened.scan(b"\x01a")) == [(b"\x01ak1", b"1")]
        assert reopened.get(b"position") is None  # the position lives apart


def test_use_after_close_is_an_error(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s")
    store.close()
    for use in (lambda: store.get(b"k"), lambda: store.get_many([b"k"]),
                lambda: list(store.scan(b"")), lambda: store.apply([], Position())):
        with pytest.raises(StateError, match="closed"):
            use()


def test_reset_and_destroy_forget_everything(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s")
    store.apply([(b"\x01ak", b"1")], Position(3, 3, 3))
    store.reset()
    assert store.position == Position() and store.get(b"\x01ak") is None
    store.destroy()
    assert not (tmp_path / "s").exists()
    store.destroy()
